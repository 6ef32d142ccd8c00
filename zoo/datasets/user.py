"""User datasets, never downloaded: ``cifar10``, ``cifar100``, ``stl10`` (torchvision, ``download=False``),
``imagefolder`` and ``coco`` (instances json + image folder), all loaded from ``root``.

For CIFAR/STL ``val`` is a fixed stratified 10 % of the official train set and ``test`` the official test set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.datasets.core import (
    ClassificationSplit,
    DatasetError,
    DatasetOptions,
    DetectionSplit,
    register_dataset,
    split_indices,
)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: expected a directory at {path}, found none")
    return path


def _holdout_val(images: np.ndarray, targets: np.ndarray, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Carve a fixed stratified 10 % validation set out of an official train set."""
    parts = split_indices(targets, fractions=(0.9, 0.1, 0.0), seed=0)
    idx = parts["train"] if split == "train" else parts["val"]
    return images[idx], targets[idx]


def _torchvision_builder(name: str) -> Callable[[str, DatasetOptions], ClassificationSplit]:
    def build(split: str, opts: DatasetOptions) -> ClassificationSplit:
        import torchvision.datasets as tvd

        root = _require_dir(Path(opts.root).expanduser(), name)  # type: ignore[arg-type]
        official = "test" if split == "test" else "train"
        try:
            if name == "stl10":
                ds = tvd.STL10(str(root), split=official, download=False)
                images = ds.data.transpose(0, 2, 3, 1)
                targets = np.asarray(ds.labels, dtype=np.int64)
                classes = list(ds.classes)
            else:
                cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
                ds = cls(str(root), train=official == "train", download=False)
                images, targets, classes = ds.data, np.asarray(ds.targets, dtype=np.int64), list(ds.classes)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            raise DatasetError(
                f"{name}: torchvision found no extracted {name} files under {root} ({exc}); "
                f"place the official archive's extracted folder there (we never download)"
            ) from exc
        if split != "test":
            images, targets = _holdout_val(images, targets, split, name)
        if opts.image_size and opts.image_size != images.shape[1]:
            images = _resize_all(images, opts.image_size)
        return ClassificationSplit(
            name=name,
            split=split,
            classes=classes,
            targets=targets,
            images=np.ascontiguousarray(images),
            recipe={"kind": name, "root": str(root), "image_size": opts.image_size, "val_rule": "10% of train"},
            image_size=images.shape[1],
        )

    return build


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


for _name, _desc in [
    ("cifar10", "CIFAR-10 from local files (torchvision layout)"),
    ("cifar100", "CIFAR-100 from local files (torchvision layout)"),
    ("stl10", "STL-10 labelled splits from local files (torchvision layout)"),
]:
    register_dataset(_name, task="classification", description=_desc, embedded=False)(_torchvision_builder(_name))

_IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@register_dataset(
    "imagefolder",
    task="classification",
    description="root/<class>/*.jpg, or root/{train,val,test}/<class>/*.jpg",
    embedded=False,
)
def _imagefolder(split: str, opts: DatasetOptions) -> ClassificationSplit:
    root = _require_dir(Path(opts.root).expanduser(), "imagefolder")  # type: ignore[arg-type]
    has_split_dirs = (root / "train").is_dir()
    base = root / split if has_split_dirs else root
    if has_split_dirs and not base.is_dir():
        if split == "val":  # no val folder: hold out 10 % of train
            base = root / "train"
        else:
            raise DatasetError(f"imagefolder: expected {base} (split '{split}') next to {root / 'train'}")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"imagefolder: no class sub-folders under {base}")
    paths, targets = [], []
    for ci, c in enumerate(classes):
        files = sorted(p for p in (base / c).rglob("*") if p.suffix.lower() in _IMG_EXT)
        paths += [str(p) for p in files]
        targets += [ci] * len(files)
    if not paths:
        raise DatasetError(f"imagefolder: no images ({', '.join(sorted(_IMG_EXT))}) under {base}")
    t = np.asarray(targets, dtype=np.int64)
    if not has_split_dirs:
        idx = split_indices(t, fractions=(0.7, 0.1, 0.2))[split]
    elif split in ("train", "val") and not (root / "val").is_dir():
        parts = split_indices(t, fractions=(0.9, 0.1, 0.0))
        idx = parts[split]
    else:
        idx = np.arange(len(t))
    return ClassificationSplit(
        name="imagefolder",
        split=split,
        classes=classes,
        targets=t[idx],
        paths=[paths[i] for i in idx],
        recipe={"kind": "imagefolder", "root": str(root), "image_size": opts.image_size},
        image_size=opts.image_size,
    )


@register_dataset(
    "coco",
    task="detection",
    description="COCO instances json + images: root/annotations/instances_<split>[2017].json",
    embedded=False,
    splits=("train", "val"),
)
def _coco(split: str, opts: DatasetOptions) -> DetectionSplit:
    root = _require_dir(Path(opts.root).expanduser(), "coco")  # type: ignore[arg-type]
    candidates = [
        root / "annotations" / f"instances_{split}.json",
        root / "annotations" / f"instances_{split}2017.json",
    ]
    json_path = next((p for p in candidates if p.is_file()), None)
    if json_path is None:
        raise DatasetError(f"coco: expected one of {', '.join(map(str, candidates))}")
    dirs = [root / "images" / split, root / f"{split}2017", root / split]
    image_dir = next((p for p in dirs if p.is_dir()), None)
    if image_dir is None:
        raise DatasetError(f"coco: expected an image folder at one of {', '.join(map(str, dirs))}")
    cats = validate_coco_json(json_path, image_dir=None)
    return DetectionSplit(
        name="coco",
        split=split,
        json_path=json_path,
        image_dir=image_dir,
        classes=cats,
        recipe={"kind": "coco", "json": str(json_path), "size": os.path.getsize(json_path)},
    )


def validate_coco_json(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> list[str]:
    """Check a COCO instances file; return category names in id order.

    Errors name the file and the problem: a missing top-level or per-record field, an annotation whose
    image or category is unknown, a box with non-positive size or outside its image, a missing image file
    (when ``image_dir`` is given).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"COCO json not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise DatasetError(f"{path}: missing top-level list '{key}'")
    cats: dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        for key in ("id", "name"):
            if key not in c:
                raise DatasetError(f"{path}: categories[{i}] has no '{key}'")
        cats[int(c["id"])] = str(c["name"])
    images: dict[int, dict[str, Any]] = {}
    for i, im in enumerate(data["images"]):
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise DatasetError(f"{path}: images[{i}] has no '{key}'")
        images[int(im["id"])] = im
        if image_dir is not None and not (Path(image_dir) / im["file_name"]).is_file():
            raise DatasetError(f"{path}: images[{i}] file '{im['file_name']}' not found in {image_dir}")
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in ann:
                raise DatasetError(f"{path}: annotations[{i}] (id {ann.get('id')}) has no '{key}'")
        if int(ann["category_id"]) not in cats:
            raise DatasetError(
                f"{path}: annotations[{i}] (id {ann['id']}) has unknown category_id {ann['category_id']}"
                f" (categories: {sorted(cats)})"
            )
        im = images.get(int(ann["image_id"]))
        if im is None:
            raise DatasetError(
                f"{path}: annotations[{i}] (id {ann['id']}) refers to unknown image_id {ann['image_id']}"
            )
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise DatasetError(f"{path}: annotations[{i}] (id {ann['id']}) bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise DatasetError(f"{path}: annotations[{i}] (id {ann['id']}) bbox {bbox} has non-positive size")
        if x < 0 or y < 0 or x + w > im["width"] + 1e-3 or y + h > im["height"] + 1e-3:
            raise DatasetError(
                f"{path}: annotations[{i}] (id {ann['id']}) bbox {bbox} lies outside image {im['id']}"
                f" ({im['width']}x{im['height']})"
            )
    return [cats[k] for k in sorted(cats)]
