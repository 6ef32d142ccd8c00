"""User datasets in the layouts the published protocols train on, loaded from ``root`` (never downloaded).

- ``imagenet``: an ImageNet-style tree ``root/train/<class>/*`` and ``root/val/<class>/*`` (ILSVRC-2012).
  The official validation set is our ``test`` (reported only, as every paper reports it); ``train`` / ``val``
  are a fixed stratified 90 / 10 % split of ``root/train``, so hyper-parameters are never chosen on the
  reported images. Each image is resized (shorter side) to ``round(S × 256 / 224)`` and centre-cropped to
  ``S = image_size`` (torchvision ``Resize(256)`` + ``CenterCrop(224)`` at 224 px, the standard evaluation
  transform), never squashed to a square. ``trainval`` is every image of ``root/train`` (1,281,167 for
  ILSVRC-2012): BYOL pretrains on it, as DeepMind's ``Split.TRAIN_AND_VALID``; evaluators never read it.
- ``imagenet100``: the same layout holding exactly the 100 classes of CMC's ``imagenet100.txt``
  (HobbitLong/CMC at commit bc687a26; solo-learn's ``solo/data/dataset_subset/imagenet100_classes.txt`` at
  commit d418d09c lists the same 100 WordNet ids in the same order). A tree with any other class is refused,
  naming the missing and extra ids.
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

__all__ = ["IMAGENET100_WNIDS", "imagenet100_class_problem"]

# CMC's imagenet100.txt (HobbitLong/CMC, commit bc687a26de7ae350d98f671d25d164b65336b8c2), in its order
IMAGENET100_WNIDS = tuple(
    """
    n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890 n03062245 n01773797
    n01735189 n07831146 n07753275 n03085013 n04485082 n02105505 n01983481 n02788148 n03530642 n04435653
    n02086910 n02859443 n13040303 n03594734 n02085620 n02099849 n01558993 n04493381 n02109047 n04111531
    n02877765 n04429376 n02009229 n01978455 n02106550 n01820546 n01692333 n07714571 n02974003 n02114855
    n03785016 n03764736 n03775546 n02087046 n07836838 n04099969 n04592741 n03891251 n02701002 n03379051
    n02259212 n07715103 n03947888 n04026417 n02326432 n03637318 n01980166 n02113799 n02086240 n03903868
    n02483362 n04127249 n02089973 n03017168 n02093428 n02804414 n02396427 n04418357 n02172182 n01729322
    n02113978 n03787032 n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029
    n03837869 n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630 n03584829 n02123045
    n04229816 n02100583 n03642806 n04336792 n03259280 n02116738 n02108089 n03424325 n01855672 n02090622
    """.split()
)

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


def imagenet100_class_problem(classes: list[str], where: Path) -> str | None:
    """Why the class folders ``classes`` found at ``where`` are not ImageNet-100's (None when they are)."""
    missing = sorted(set(IMAGENET100_WNIDS) - set(classes))
    extra = sorted(set(classes) - set(IMAGENET100_WNIDS))
    if not missing and not extra:
        return None
    return (
        f"imagenet100: {where} must hold exactly the 100 classes of CMC's imagenet100.txt; "
        f"missing {len(missing)}: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; "
        f"extra {len(extra)}: {', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}"
    )


# train / val = a fixed 90 / 10 % of train/, test = val/, trainval = all of train/ (for pretraining only)
_TREE_SPLITS = ("train", "val", "test", "trainval")


class _CenterCropSplit(ClassificationSplit):
    """An image-folder split read as resize(shorter side → round(S·256/224)) + centre crop S, not squashed."""

    def __getitem__(self, index: int):
        from PIL import Image
        from torchvision.transforms import functional as tf

        assert self.paths is not None
        with Image.open(self.paths[index]) as fh:
            img = fh.convert("RGB")
        if self.image_size is not None:
            img = tf.center_crop(tf.resize(img, eval_resize(self.image_size)), [self.image_size, self.image_size])
        return img, int(self.targets[index])


def eval_resize(image_size: int) -> int:
    """The shorter side an image is resized to before the centre crop: 256 for 224 (ratio 256/224)."""
    return int(round(image_size * 256 / 224))


def _image_tree_split(
    name: str, split: str, opts: DatasetOptions, wnids: tuple[str, ...] | None
) -> ClassificationSplit:
    """One split of an ImageNet-style tree; with ``wnids``, a tree holding other classes is refused."""
    root = Path(opts.root).expanduser()  # type: ignore[arg-type]
    base = root / ("val" if split == "test" else "train")
    if wnids is not None and base.is_dir():
        problem = imagenet100_class_problem(sorted(p.name for p in base.iterdir() if p.is_dir()), base)
        if problem:
            raise DatasetError(problem)
    classes, paths, targets = _class_tree(base)
    if split == "test":
        train_classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        if train_classes and train_classes != classes:
            raise DatasetError(f"{name}: {root / 'val'} and {root / 'train'} hold different class folders")
        idx = np.arange(len(targets))
    elif split == "trainval":  # every image of train/: what BYOL pretrains on (DeepMind's TRAIN_AND_VALID)
        idx = np.arange(len(targets))
    else:
        idx = split_indices(targets, fractions=(0.9, 0.1, 0.0), seed=0)[split]
    size = opts.image_size
    return _CenterCropSplit(
        name=name,
        split=split,
        classes=classes,
        targets=targets[idx],
        paths=[paths[i] for i in idx],
        recipe={
            "kind": name,
            "root": str(root),
            "image_size": size,
            "val_rule": "10% of train/",
            "transform": None if size is None else f"resize shorter side {eval_resize(size)} + centre crop {size}",
        },
        image_size=size,
    )


@register_dataset(
    "imagenet",
    splits=_TREE_SPLITS,
    task="classification",
    description="root/train/<class>/*, root/val/<class>/*; test = val/, train/val = 90/10 % of train/",
    embedded=False,
)
def _imagenet(split: str, opts: DatasetOptions) -> ClassificationSplit:
    return _image_tree_split("imagenet", split, opts, None)


@register_dataset(
    "imagenet100",
    splits=_TREE_SPLITS,
    task="classification",
    description="ImageNet-100 (CMC's 100 classes): root/train/<wnid>/*, root/val/<wnid>/*; splits as imagenet",
    embedded=False,
)
def _imagenet100(split: str, opts: DatasetOptions) -> ClassificationSplit:
    return _image_tree_split("imagenet100", split, opts, IMAGENET100_WNIDS)


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
