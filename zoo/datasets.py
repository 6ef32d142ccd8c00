"""Dataset registry shared by pretraining and evaluation.

Embedded datasets need no download (they are built from scikit-learn's bundled data and cached):

- ``digits``: the 1,797 8×8 digits, upscaled to ``image_size`` and 3 channels.
- ``digits-m``: the same digits blended over crops of scikit-learn's two colour photographs with the
  MNIST-M recipe (Ganin & Lempitsky 2015, Sec. 5.1: per-pixel ``|photo − digit|``).
- ``digits-det``: canvases with 1–6 digits over photo crops, written as a real COCO json + PNG images.

User datasets never download: ``imagefolder``, ``cifar10``, ``cifar100``, ``stl10`` (torchvision,
``download=False``) and ``coco`` (instances json + image folder) load from ``root``.

Splits. Every classification dataset has ``train`` / ``val`` / ``test``. ``val`` chooses hyper-parameters;
``test`` is only ever reported. For the digit sets the split is a fixed stratified 60/20/20 partition
(seed 0, independent of the generation seed); for CIFAR/STL ``val`` is a fixed stratified 10 % of the
official train set and ``test`` the official test set.

A registered builder is ``fn(split: str, opts: DatasetOptions) -> ClassificationSplit | DetectionSplit``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.io import atomic_replace_dir, atomic_write_with, default_cache_dir, stable_hash

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "DatasetOptions",
    "ClassificationSplit",
    "DetectionSplit",
    "DatasetError",
    "register_dataset",
    "load_dataset",
    "list_datasets",
    "digit_arrays",
    "digit_m_layers",
    "digit_m_nuisance",
    "split_indices",
    "validate_coco_json",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")
_RECIPE_VERSION = 1  # bump when a generator changes: cached files are keyed on it


class DatasetError(ValueError):
    """A dataset is unknown, unavailable at the given path, or malformed. The message says what and where."""


@dataclass(frozen=True)
class DatasetOptions:
    """Options a dataset builder may use. ``root`` is required for user datasets."""

    root: str | None = None
    image_size: int | None = None  # None: the dataset's native size (32 for the digit sets)
    seed: int = 0  # generation seed of the embedded sets (not the split seed, which is fixed)
    cache_dir: str | None = None
    # digits-det only
    det_canvas: int = 128
    det_train_images: int = 600
    det_val_images: int = 150

    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir() / "data"


@dataclass
class ClassificationSplit:
    """One split of a labelled image dataset.

    ``images`` is uint8 ``N × H × W × 3`` when the data is in memory (embedded sets, CIFAR, STL); for an
    image folder it is ``None`` and ``paths`` lists the files. ``__getitem__`` returns ``(PIL.Image, int)``.
    """

    name: str
    split: str
    classes: list[str]
    targets: np.ndarray  # N, int64; -1 for unlabelled images
    images: np.ndarray | None = None  # N x H x W x 3 uint8
    paths: list[str] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    recipe: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        return bool(len(self.targets)) and bool((self.targets >= 0).all())

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        if self.images is not None:
            img = Image.fromarray(self.images[index])
        else:
            assert self.paths is not None
            with Image.open(self.paths[index]) as fh:
                img = fh.convert("RGB")
            if self.image_size is not None:
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        return img, int(self.targets[index])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8 N×H×W×3, int64 N)``; loads an image folder into memory (needs ``image_size``)."""
        if self.images is None:
            if self.image_size is None:
                raise DatasetError(f"{self.name}: pass image_size to load an image folder into memory")
            self.images = np.stack([np.asarray(self[i][0]) for i in range(len(self))])
        return self.images, self.targets

    def subset(self, indices: np.ndarray | list[int]) -> ClassificationSplit:
        """A new split holding only ``indices`` (used for low-shot draws)."""
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            targets=self.targets[idx],
            images=None if self.images is None else self.images[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            recipe={**self.recipe, "subset": stable_hash(idx.tolist())},
        )

    def describe(self) -> dict[str, Any]:
        """Identity of this split for records and cache keys."""
        return {"name": self.name, "split": self.split, "size": len(self), "recipe": self.recipe}


@dataclass
class DetectionSplit:
    """One split of a COCO-format detection dataset: an instances json and the folder its file names use."""

    name: str
    split: str
    json_path: Path
    image_dir: Path
    classes: list[str]
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "json": str(self.json_path), "recipe": self.recipe}


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    task: str  # "classification" | "detection"
    description: str
    builder: Callable[[str, DatasetOptions], Any]
    embedded: bool
    splits: tuple[str, ...] = SPLITS


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str, *, task: str, description: str, embedded: bool, splits: tuple[str, ...] = SPLITS
) -> Callable:
    """Register ``builder(split, opts)`` under ``name``. Duplicate names are an error."""

    def deco(fn: Callable[[str, DatasetOptions], Any]) -> Callable[[str, DatasetOptions], Any]:
        if name in DATASETS:
            raise ValueError(f"dataset '{name}' is already registered")
        DATASETS[name] = DatasetEntry(name, task, description, fn, embedded, splits)
        return fn

    return deco


def load_dataset(
    name: str, split: str, opts: DatasetOptions | None = None, **kwargs: Any
) -> ClassificationSplit | DetectionSplit:
    """Build split ``split`` of dataset ``name``; ``kwargs`` are ``DatasetOptions`` fields."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(sorted(DATASETS))})")
    entry = DATASETS[name]
    if split not in entry.splits:
        raise DatasetError(f"dataset '{name}' has no split '{split}' (splits: {', '.join(entry.splits)})")
    opts = dataclasses.replace(opts or DatasetOptions(), **kwargs) if kwargs else (opts or DatasetOptions())
    if not entry.embedded and not opts.root:
        raise DatasetError(f"dataset '{name}' reads local files: pass root=PATH (--root) to where it lives")
    return entry.builder(split, opts)


def list_datasets(opts: DatasetOptions | None = None) -> list[dict[str, Any]]:
    """One row per dataset: name, task, description and split sizes (or why it is unavailable)."""
    rows = []
    for name, entry in sorted(DATASETS.items()):
        row: dict[str, Any] = {"name": name, "task": entry.task, "description": entry.description}
        if not entry.embedded and not (opts and opts.root):
            row.update(available=False, sizes="needs --root PATH")
        else:
            try:
                sizes = {}
                for s in entry.splits:
                    ds = load_dataset(name, s, opts)
                    sizes[s] = len(ds) if isinstance(ds, ClassificationSplit) else _count_coco(ds.json_path)
                row.update(available=True, sizes=sizes)
            except (DatasetError, FileNotFoundError, OSError) as exc:
                row.update(available=False, sizes=str(exc))
        rows.append(row)
    return rows


def _count_coco(path: Path) -> int:
    return len(json.loads(Path(path).read_text())["images"])


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def split_indices(
    labels: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, np.ndarray]:
    """Stratified, deterministic train/val/test index partition (sorted indices per split)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        out["train"] += idx[:n_train].tolist()
        out["val"] += idx[n_train : n_train + n_val].tolist()
        out["test"] += idx[n_train + n_val :].tolist()
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}


# --------------------------------------------------------------------------------------------------
# Embedded digit sets
# --------------------------------------------------------------------------------------------------


def _recipe_cache(cache_dir: Path | None, stem: str, recipe: dict[str, Any]) -> Path:
    """``<cache>/data/<stem>-<hash of recipe>.npz``: a changed recipe gets a new file, never a stale one."""
    return (cache_dir or default_cache_dir() / "data") / f"{stem}-{stable_hash(recipe)}.npz"


def _load_cached_npz(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays cached at ``path``; (re)generate and write atomically when absent or unreadable."""
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            pass  # half-written or corrupt: rebuild below
    arrays = make()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write_with(path, write)
    return arrays


def _upscale(images01: np.ndarray, size: int) -> np.ndarray:
    """``N × h × w`` floats in [0, 1] → ``N × size × size`` floats, bilinear."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images01.astype(np.float32))[:, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return up[:, 0].clamp_(0, 1).numpy()


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two sample photos, decoded once per process (every generator here cuts from them)."""
    from sklearn.datasets import load_sample_images

    photos = tuple(np.array(img, dtype=np.uint8) for img in load_sample_images().images)
    for photo in photos:
        photo.setflags(write=False)  # shared by every caller: a crop of it must be copied before it is changed
    return photos


def _photo_crop_box(
    photos: Sequence[np.ndarray], rng: np.random.Generator, size: int, max_scale: float
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A random square crop (side in [size, max_scale·size], clipped to the photo) resized to ``size``.

    Returns ``(crop, (photo_index, y, x, side))``: the box is where in which photo the crop was taken.
    """
    from PIL import Image

    p = int(rng.integers(len(photos)))
    photo = photos[p]
    h, w = photo.shape[:2]
    side = int(rng.integers(size, max(size + 1, int(min(h, w, max_scale * size)) + 1)))
    side = min(side, h, w)
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = photo[y : y + side, x : x + side]
    if side != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    return crop, (p, y, x, side)


def _photo_crop(photos: Sequence[np.ndarray], rng: np.random.Generator, size: int, max_scale: float) -> np.ndarray:
    """``_photo_crop_box`` without the box."""
    return _photo_crop_box(photos, rng, size, max_scale)[0]


def _digit_m_backgrounds(n: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` photo crops under the ``digits-m`` images (uint8 ``n × S × S × 3``) and their boxes
    (int ``n × 4``: photo index, y, x, side), in the order the recipe draws them."""
    photos = _photos()
    rng = np.random.default_rng(seed)
    crops, boxes = zip(*(_photo_crop_box(photos, rng, image_size, max_scale=4.0) for _ in range(n)), strict=True)
    return np.stack(crops), np.asarray(boxes, dtype=np.int64)


def digit_arrays(
    kind: str, image_size: int = 32, seed: int = 0, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """All 1,797 images of ``digits`` or ``digits-m`` as ``(uint8 N×S×S×3, int64 N)``, cached on disk."""
    from sklearn.datasets import load_digits

    if kind not in ("digits", "digits-m"):
        raise DatasetError(f"unknown digit set '{kind}'")
    recipe = {"kind": kind, "image_size": image_size, "seed": seed, "version": _RECIPE_VERSION}
    cache = _recipe_cache(cache_dir, f"{kind}-{image_size}px", recipe)

    def make() -> dict[str, np.ndarray]:
        d = load_digits()
        digits = _upscale(d.images / 16.0, image_size)  # N x S x S in [0, 1]
        gray = np.round(digits * 255.0).astype(np.uint8)
        if kind == "digits":
            images = np.repeat(gray[..., None], 3, axis=3)
        else:
            bg, _ = _digit_m_backgrounds(len(gray), image_size, seed)
            images = np.abs(bg.astype(np.int16) - gray[..., None].astype(np.int16)).astype(np.uint8)
        return {"images": images, "labels": d.target.astype(np.int64)}

    arrays = _load_cached_npz(cache, make)
    return arrays["images"], arrays["labels"], recipe


def _split_glyphs(split: str, image_size: int, seed: int, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The grey digits under every digit image (uint8 ``N × S × S``) and the indices of ``split`` among them."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")
    gray, labels, _ = digit_arrays("digits", image_size, seed, cache_dir)
    return gray[..., 0], split_indices(labels)[split]


def digit_m_layers(
    split: str, image_size: int = 32, num_backgrounds: int = 4096, seed: int = 0, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The two layers ``digits-m`` is composed of, for background augmentation in pretraining.

    Returns ``(glyphs, backgrounds)``: the grey digit of every image of ``split`` (uint8 ``N × S × S``, the
    same order as ``load_dataset("digits-m", split)``) and a bank of ``num_backgrounds`` fresh photo crops
    (uint8 ``M × S × S × 3``, drawn with a seed distinct from the dataset's). ``|background − glyph|`` is a
    ``digits-m`` image of the same digit over another background. No labels are involved.
    """
    gray, idx = _split_glyphs(split, image_size, seed, cache_dir)
    recipe = {"kind": "digits-m-backgrounds", "size": image_size, "n": num_backgrounds, "seed": seed, "v": 1}
    cache = _recipe_cache(cache_dir, f"digits-m-bg-{image_size}px", recipe)

    def make() -> dict[str, np.ndarray]:
        photos = _photos()
        rng = np.random.default_rng([seed, 104729])  # not the stream that drew the dataset's own backgrounds
        bank = np.stack([_photo_crop(photos, rng, image_size, max_scale=4.0) for _ in range(num_backgrounds)])
        return {"backgrounds": bank}

    bank = _load_cached_npz(cache, make)["backgrounds"]
    return np.ascontiguousarray(gray[idx]), bank


def digit_m_nuisance(
    split: str, image_size: int = 32, seed: int = 0, cache_dir: Path | None = None
) -> dict[str, np.ndarray]:
    """The factors of every ``digits-m`` image of ``split`` that are *not* the digit, replayed from the recipe.

    Same order as ``load_dataset("digits-m", split)``. Keys: ``photo`` (int ``N``: which scikit-learn photo
    the background was cut from), ``bg_x`` / ``bg_y`` (the crop's centre as a fraction of the photo's width /
    height), ``bg_scale`` (crop side / the photo's shorter side), ``bg_rgb`` (``N × 3`` mean colour of the
    background crop in [0, 1]) and ``ink`` (mean of the grey digit in [0, 1], how much of the image is stroke).
    Used by the ``nuisance`` evaluator to measure how much of a representation is background.
    """
    gray, idx = _split_glyphs(split, image_size, seed, cache_dir)
    bg, boxes = _digit_m_backgrounds(len(gray), image_size, seed)
    shapes = np.asarray([p.shape[:2] for p in _photos()])[boxes[:, 0]]  # N x (h, w)
    side = boxes[:, 3].astype(np.float64)
    out = {
        "photo": boxes[:, 0],
        "bg_x": (boxes[:, 2] + side / 2) / shapes[:, 1],
        "bg_y": (boxes[:, 1] + side / 2) / shapes[:, 0],
        "bg_scale": side / shapes.min(axis=1),
        "bg_rgb": bg.reshape(len(bg), -1, 3).mean(axis=1) / 255.0,
        "ink": gray.reshape(len(gray), -1).mean(axis=1) / 255.0,
    }
    return {k: v[idx] for k, v in out.items()}


def _digit_builder(kind: str) -> Callable[[str, DatasetOptions], ClassificationSplit]:
    def build(split: str, opts: DatasetOptions) -> ClassificationSplit:
        size = opts.image_size or 32
        images, labels, recipe = digit_arrays(kind, size, opts.seed, opts.cache_path())
        idx = split_indices(labels)[split]
        return ClassificationSplit(
            name=kind,
            split=split,
            classes=[str(i) for i in range(10)],
            targets=labels[idx],
            images=images[idx],
            recipe={**recipe, "split_rule": "stratified 60/20/20, seed 0"},
            image_size=size,
        )

    return build


register_dataset(
    "digits",
    task="classification",
    description="scikit-learn's 8x8 digits (1,797 images), upscaled, 3 channels",
    embedded=True,
)(_digit_builder("digits"))
register_dataset(
    "digits-m",
    task="classification",
    description="digits blended over crops of scikit-learn's colour photos (MNIST-M recipe)",
    embedded=True,
)(_digit_builder("digits-m"))


# --------------------------------------------------------------------------------------------------
# digits-det: COCO-format detection canvases
# --------------------------------------------------------------------------------------------------


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


def _make_digits_det(out_dir: Path, opts: DatasetOptions) -> None:
    """Write ``images/{train,val}/*.png`` and ``annotations/instances_{train,val}.json`` under ``out_dir``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    parts = split_indices(d.target)
    photos = _photos()
    canvas = opts.det_canvas
    categories = [{"id": i, "name": str(i), "supercategory": "digit"} for i in range(10)]
    # train canvases use train-split digits, val canvases use test-split digits: no digit leaks.
    plan = {"train": (opts.det_train_images, parts["train"]), "val": (opts.det_val_images, parts["test"])}
    for split, (n_images, pool) in plan.items():
        rng = np.random.default_rng([opts.seed, 0 if split == "train" else 1])
        img_dir = out_dir / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for img_id in range(1, n_images + 1):
            bg = _photo_crop(photos, rng, canvas, max_scale=3.0).astype(np.int16)
            boxes: list[tuple[int, int, int, int]] = []
            for _ in range(int(rng.integers(1, 7))):
                for _attempt in range(20):
                    side = int(rng.integers(canvas // 8, canvas * 3 // 8 + 1))
                    k = int(pool[rng.integers(len(pool))])
                    glyph = np.round(_upscale(d.images[k : k + 1] / 16.0, side)[0] * 255).astype(np.int16)
                    ys, xs = np.nonzero(glyph > 32)  # visible strokes define the exact box
                    if len(ys) == 0:
                        continue
                    y0 = int(rng.integers(0, canvas - side + 1))
                    x0 = int(rng.integers(0, canvas - side + 1))
                    box = (x0 + int(xs.min()), y0 + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
                    if any(_box_iou(box, b) > 0.1 for b in boxes):
                        continue
                    region = bg[y0 : y0 + side, x0 : x0 + side]
                    bg[y0 : y0 + side, x0 : x0 + side] = np.where(
                        glyph[..., None] > 0, np.abs(region - glyph[..., None]), region
                    )
                    boxes.append(box)
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": img_id,
                            "category_id": int(d.target[k]),
                            "bbox": [float(v) for v in box],
                            "area": float(box[2] * box[3]),
                            "iscrowd": 0,
                        }
                    )
                    break
            file_name = f"{img_id:06d}.png"
            Image.fromarray(bg.astype(np.uint8)).save(img_dir / file_name)
            images.append({"id": img_id, "file_name": file_name, "width": canvas, "height": canvas})
        coco = {
            "info": {"description": f"digits-det {split}", "version": str(_RECIPE_VERSION)},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        ann_dir = out_dir / "annotations"
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / f"instances_{split}.json").write_text(json.dumps(coco))


@register_dataset(
    "digits-det",
    task="detection",
    description="1-6 digits on photo canvases, COCO json + PNG (categories 0-9)",
    embedded=True,
    splits=("train", "val"),
)
def _digits_det(split: str, opts: DatasetOptions) -> DetectionSplit:
    recipe = {
        "kind": "digits-det",
        "canvas": opts.det_canvas,
        "train_images": opts.det_train_images,
        "val_images": opts.det_val_images,
        "seed": opts.seed,
        "version": _RECIPE_VERSION,
    }
    root = opts.cache_path() / f"digits-det-{stable_hash(recipe)}"
    if not (root / "COMPLETE").is_file():  # the marker is written last: a half-built folder is rebuilt
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".digits-det-", dir=root.parent))
        try:
            _make_digits_det(tmp, opts)
            (tmp / "COMPLETE").write_text(json.dumps(recipe))
            atomic_replace_dir(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return DetectionSplit(
        name="digits-det",
        split=split,
        json_path=root / "annotations" / f"instances_{split}.json",
        image_dir=root / "images" / split,
        classes=[str(i) for i in range(10)],
        recipe=recipe,
    )


# --------------------------------------------------------------------------------------------------
# User datasets (never downloaded)
# --------------------------------------------------------------------------------------------------


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
