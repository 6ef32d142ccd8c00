"""User datasets in the layouts the published protocols train on, loaded from ``root`` (never downloaded).

- ``imagenet``: an ImageNet-style tree ``root/train/<class>/*`` and ``root/val/<class>/*`` (ILSVRC-2012,
  or the ImageNet-100 subset of CMC's class list). The official validation set is our ``test`` (reported
  only, as every paper reports it); ``train`` / ``val`` are a fixed stratified 90 / 10 % split of
  ``root/train``, so hyper-parameters are never chosen on the reported images.
- ``stl10-unlabeled``: STL-10 for pretraining as BYOL-style papers do (torchvision's ``train+unlabeled``,
  105,000 images at 96 px; the 100,000 unlabelled ones have label -1). ``val`` and ``test`` are
  ``stl10``'s (10 % of the labelled train set, the official test set), so the in-run health kNN and the
  evaluators read the labelled images.

A missing folder or file is a ``DatasetError`` that says what was expected where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.datasets.core import ClassificationSplit, DatasetError, DatasetOptions, register_dataset, split_indices

__all__: list[str] = []

_IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _class_tree(base: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(classes, paths, targets)`` of ``base/<class>/**/<image>``, classes and files sorted."""
    if not base.is_dir():
        raise DatasetError(f"imagenet: expected a directory at {base} (class folders inside), found none")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"imagenet: no class sub-folders under {base}")
    paths: list[str] = []
    targets: list[int] = []
    for ci, c in enumerate(classes):
        files = sorted(p for p in (base / c).rglob("*") if p.suffix.lower() in _IMG_EXT)
        paths += [str(p) for p in files]
        targets += [ci] * len(files)
    if not paths:
        raise DatasetError(f"imagenet: no images ({', '.join(sorted(_IMG_EXT))}) under {base}")
    return classes, paths, np.asarray(targets, dtype=np.int64)


@register_dataset(
    "imagenet",
    task="classification",
    description="root/train/<class>/*, root/val/<class>/*; test = val/, train/val = 90/10 % of train/",
    embedded=False,
)
def _imagenet(split: str, opts: DatasetOptions) -> ClassificationSplit:
    root = Path(opts.root).expanduser()  # type: ignore[arg-type]
    classes, paths, targets = _class_tree(root / ("val" if split == "test" else "train"))
    if split == "test":
        train_classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        if train_classes and train_classes != classes:
            raise DatasetError(f"imagenet: {root / 'val'} and {root / 'train'} hold different class folders")
        idx = np.arange(len(targets))
    else:
        idx = split_indices(targets, fractions=(0.9, 0.1, 0.0), seed=0)[split]
    return ClassificationSplit(
        name="imagenet",
        split=split,
        classes=classes,
        targets=targets[idx],
        paths=[paths[i] for i in idx],
        recipe={"kind": "imagenet", "root": str(root), "image_size": opts.image_size, "val_rule": "10% of train/"},
        image_size=opts.image_size,
    )


@register_dataset(
    "stl10-unlabeled",
    task="classification",
    description="STL-10 train+unlabeled (105k, labels -1) for pretraining; val/test as stl10 (torchvision layout)",
    embedded=False,
)
def _stl10_unlabeled(split: str, opts: DatasetOptions) -> ClassificationSplit:
    from zoo.datasets.core import load_dataset

    if split != "train":
        return load_dataset("stl10", split, opts)
    import torchvision.datasets as tvd

    root = Path(opts.root).expanduser()  # type: ignore[arg-type]
    if not root.is_dir():
        raise DatasetError(f"stl10-unlabeled: expected a directory at {root}, found none")
    try:
        ds = tvd.STL10(str(root), split="train+unlabeled", download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DatasetError(
            f"stl10-unlabeled: torchvision found no extracted STL-10 files under {root} ({exc}); place the "
            f"official archive's stl10_binary/ there (we never download)"
        ) from exc
    images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))  # N x 96 x 96 x 3
    if opts.image_size and opts.image_size != images.shape[1]:
        from zoo.datasets.user import _resize_all

        images = _resize_all(images, opts.image_size)
    return ClassificationSplit(
        name="stl10-unlabeled",
        split=split,
        classes=list(ds.classes),
        targets=np.asarray(ds.labels, dtype=np.int64),
        images=images,
        recipe={"kind": "stl10-unlabeled", "root": str(root), "image_size": opts.image_size},
        image_size=images.shape[1],
    )
