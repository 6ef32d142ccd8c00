"""The digit family: ``digits``, ``digits-m`` and ``digits-det``, built from scikit-learn's bundled data.

- ``digits``: the 1,797 8×8 digits, upscaled to ``image_size`` and 3 channels.
- ``digits-m``: the same digits blended over crops of scikit-learn's two colour photographs with the
  MNIST-M recipe (Ganin & Lempitsky 2015, Sec. 5.1: per-pixel ``|photo − digit|``).
- ``digits-det``: canvases with 1–6 digits over photo crops, written as a real COCO json + PNG images.

The split is a fixed stratified 60/20/20 partition (seed 0, independent of the generation seed). At 1,078
training images BYOL does not beat a random network on these sets (README, results/pretrain-probes/); they
stay as documented small-data sets. The default is ``shapes`` (zoo/datasets/shapes.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.datasets.core import (
    SPLITS,
    ClassificationSplit,
    DatasetError,
    DatasetOptions,
    DetectionSplit,
    _load_cached_npz,
    _recipe_cache,
    box_iou,
    embedded_detection_split,
    register_dataset,
    split_indices,
    write_coco_json,
)

_RECIPE_VERSION = 1  # bump when a generator changes: cached files are keyed on it


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


def _make_digits_det(out_dir: Path, opts: DatasetOptions) -> None:
    """Write ``images/{train,val}/*.png`` and ``annotations/instances_{train,val}.json`` under ``out_dir``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if opts.det_test_images:
        raise DatasetError("digits-det has no test split: det_test_images is a shapes-det option (set it to 0)")
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
                    if any(box_iou(box, b) > 0.1 for b in boxes):
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
        coco = {"images": images, "annotations": annotations, "categories": categories}
        write_coco_json(out_dir, split, f"digits-det {split}", _RECIPE_VERSION, coco)


@register_dataset(
    "digits-det",
    task="detection",
    description="1-6 digits on photo canvases, COCO json + PNG (categories 0-9)",
    embedded=True,
    splits=("train", "val"),
)
def _digits_det(split: str, opts: DatasetOptions) -> DetectionSplit:
    return embedded_detection_split(
        "digits-det", split, opts, _RECIPE_VERSION, _make_digits_det, [str(i) for i in range(10)]
    )
