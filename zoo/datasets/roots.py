"""Cheap checks that a user dataset's root holds the files its layout needs, without reading them all.

``check_root(name, root)`` returns one line per problem (empty: the layout is there). For CIFAR, STL-10, the
ImageNet trees and COCO it looks at file and folder names only, plus one image per class folder, so a dry run
over ImageNet takes seconds; any other user dataset is checked by building its train and test splits with its
own loader. The loaders still validate the contents when a job reads them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from zoo.datasets.core import DATASETS

__all__ = ["check_root", "REQUIRED_FILES"]

# dataset -> files (relative to the root) its loader opens; torchvision's own file lists for CIFAR and STL-10
_STL10 = [f"stl10_binary/{f}" for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")]
REQUIRED_FILES: dict[str, list[str]] = {
    "cifar10": [f"cifar-10-batches-py/{f}" for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]]
    + ["cifar-10-batches-py/batches.meta"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
    "stl10": _STL10,
    "stl10-unlabeled": _STL10,
}
_IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_UNSET = re.compile(r"\$\{(\w+)\}")


def check_root(name: str, root: str | None) -> list[str]:
    """Problems with ``root`` for dataset ``name``: missing root, missing files, class folders without images."""
    entry = DATASETS.get(name)
    if entry is None:
        return [f"unknown dataset '{name}' (known: {', '.join(sorted(DATASETS))})"]
    if entry.embedded:
        return []
    if not root and entry.default_root is not None:
        root = entry.default_root()  # e.g. Debian's folder for fashion-mnist, when installed
    if not root:
        return ["no root given (dataset_options.root / data.root)"]
    unset = _UNSET.findall(root)
    if unset:
        return [f"root '{root}' uses ${{{unset[0]}}}, which is not set (export {unset[0]}=/path)"]
    base = Path(root).expanduser()
    if not base.is_dir():
        return [f"root {base} does not exist or is not a directory"]
    if name in REQUIRED_FILES:
        missing = [f for f in REQUIRED_FILES[name] if not (base / f).is_file()]
        return [f"{base} lacks {', '.join(missing)}"] if missing else []
    if name in ("imagenet", "imagenet100"):
        return _check_class_tree(name, base)
    if name == "coco":
        return _check_coco(base)
    return _check_by_loading(name, base, entry.splits)


def _check_by_loading(name: str, base: Path, splits: tuple[str, ...]) -> list[str]:
    """Any other layout: its own loader builds the train and test splits (file lists and small arrays only)."""
    from zoo.datasets.core import DatasetError, load_dataset

    out = []
    for split in [s for s in ("train", "test") if s in splits]:
        try:
            load_dataset(name, split, root=str(base))
        except (DatasetError, OSError, ValueError) as exc:
            out.append(f"split '{split}': {exc}")
    return out


def _check_class_tree(name: str, base: Path) -> list[str]:
    """``train/<class>/`` and ``val/<class>/``: the same classes, an image in each; ImageNet-100's class list."""
    out = []
    classes: dict[str, list[str]] = {}
    for split in ("train", "val"):
        d = base / split
        if not d.is_dir():
            out.append(f"{base} lacks the folder {split}/ (class folders inside)")
            continue
        classes[split] = sorted(e.name for e in os.scandir(d) if e.is_dir())
        if not classes[split]:
            out.append(f"{d} holds no class folders")
            continue
        empty = [c for c in classes[split] if not _has_image(d / c)]
        if empty:
            out.append(f"{d}: {len(empty)} class folder(s) hold no image ({', '.join(empty[:5])})")
    if len(classes) == 2 and classes["train"] and classes["val"] and classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"]))
        only_val = sorted(set(classes["val"]) - set(classes["train"]))
        out.append(f"{base}: train/ and val/ hold different classes (only in train: {only_train[:5]}, "
                   f"only in val: {only_val[:5]})")  # fmt: skip
    if name == "imagenet100":
        from zoo.datasets.published import imagenet100_class_problem

        for split, found in classes.items():
            problem = imagenet100_class_problem(found, base / split)
            if problem:
                out.append(problem)
    return out


def _has_image(folder: Path) -> bool:
    for _, _, files in os.walk(folder):
        if any(os.path.splitext(f)[1].lower() in _IMG_EXT for f in files):
            return True
    return False


def _check_coco(base: Path) -> list[str]:
    """``annotations/instances_{train,val}[2017].json`` and an image folder per split."""
    out = []
    for split in ("train", "val"):
        jsons = [base / "annotations" / f"instances_{split}.json", base / "annotations" / f"instances_{split}2017.json"]
        if not any(p.is_file() for p in jsons):
            out.append(f"{base} lacks {' or '.join(str(p.relative_to(base)) for p in jsons)}")
        dirs = [base / "images" / split, base / f"{split}2017", base / split]
        if not any(p.is_dir() for p in dirs):
            where = ", ".join(str(p.relative_to(base)) for p in dirs)
            out.append(f"{base} lacks an image folder for {split} (one of {where})")
    return out
