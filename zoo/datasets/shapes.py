"""The shapes family: procedural images whose *content* is a shape and whose *style* is everything else.

``shapes`` (the default dataset) is 10 classes of filled shapes — circle, triangle, square, pentagon,
5-point star, plus-cross, ring, heart, crescent, arrow — drawn with PIL at 4× the image size and box-filtered
down (anti-aliased edges), one per image. Everything that is not the shape is drawn at random, per image:

- position (the centre keeps the whole shape inside the image), radius (a fraction of the side),
  rotation (full circle in ``shapes``; none in ``shapes-upright``);
- foreground and background colour, uniform RGB, redrawn until their luma differs by at least 0.25;
- a linear background gradient (each channel's slope uniform in ±``gradient`` per axis, image centre fixed)
  and Gaussian pixel noise with σ ~ U(0, ``noise``) over the whole image.

These are the factors BYOL's augmentations randomise (crops: position and scale; colour jitter and
grey-scale: colours; blur: noise), so an invariant representation has to keep the shape. Every factor is
stored with the images (``shape_factors``) so the nuisance evaluator can probe each one.

Measured on the recipe (README, *Datasets*): raw pixels and a random-init ResNet-18 stay near chance on kNN
while a supervised network learns the shape; the numbers are in README and results/.

Deterministic from ``seed``: image ``i`` of a split is drawn from its own stream ``(seed, split, i)``, so the
first N images do not depend on how many are made and the three splits never share a draw. Cached as one
``.npz`` per split keyed by the recipe hash. ``shapes-det`` writes COCO canvases with several shapes and
exact boxes (from the rendered masks); its categories are the 10 shapes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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
    write_coco_json,
)

__all__ = ["SHAPE_CLASSES", "ShapesRecipe", "render_shape_mask", "shapes_arrays", "shape_factors"]

SHAPE_CLASSES = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "star",
    "cross",
    "ring",
    "heart",
    "crescent",
    "arrow",
)
_RECIPE_VERSION = 1  # bump when the generator changes: cached files are keyed on it
_SUPERSAMPLE = 4  # drawn at 4x the image side, then box-filtered down
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}


@dataclass(frozen=True)
class ShapesRecipe:
    """Everything that decides the pixels (hashed into the cache key)."""

    rotation: bool = True  # full rotation (``shapes``) or upright (``shapes-upright``)
    radius: tuple[float, float] = (0.22, 0.40)  # circumradius as a fraction of the side
    min_luma_gap: float = 0.25
    gradient: float = 0.15  # max |slope| per channel per axis (value change from centre to edge)
    noise: float = 0.04  # max σ of the Gaussian pixel noise
    version: int = _RECIPE_VERSION


RECIPES = {
    "shapes": ShapesRecipe(),
    "shapes-upright": ShapesRecipe(rotation=False, radius=(0.28, 0.45)),
}


# --------------------------------------------------------------------------------------------------
# Drawing: each shape is a polygon (or two discs) in unit coordinates, circumradius 1
# --------------------------------------------------------------------------------------------------


def _regular(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _heart(n: int = 60) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.abs(pts).max()


_CROSS = np.array([[-1, -0.33], [-0.33, -0.33], [-0.33, -1], [0.33, -1], [0.33, -0.33], [1, -0.33], [1, 0.33],
                   [0.33, 0.33], [0.33, 1], [-0.33, 1], [-0.33, 0.33], [-1, 0.33]]) * 0.95  # fmt: skip
_ARROW = np.array([[-1, -0.28], [0.15, -0.28], [0.15, -0.75], [1, 0], [0.15, 0.75], [0.15, 0.28], [-1, 0.28]])
_POLYGONS = {
    "triangle": _regular(3),
    "square": _regular(4, math.pi / 4),
    "pentagon": _regular(5),
    "star": _star(),
    "cross": _CROSS,
    "heart": _heart(),
    "arrow": _ARROW,
}


def render_shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float, size: int) -> np.ndarray:
    """Coverage mask (float32 ``size × size`` in [0, 1]) of one shape, drawn at 4× and box-filtered.

    ``cx, cy`` (pixels) is the centre, ``radius`` (pixels) the circumradius, ``angle`` (radians) the rotation.
    """
    from PIL import Image, ImageDraw

    s = _SUPERSAMPLE
    big = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(big)
    X, Y, R = cx * s, cy * s, radius * s

    def disc(x: float, y: float, r: float, fill: int) -> None:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    if shape == "circle":
        disc(X, Y, R, 255)
    elif shape == "ring":
        disc(X, Y, R, 255)
        disc(X, Y, 0.55 * R, 0)
    elif shape == "crescent":
        dx, dy = math.cos(angle) * 0.45 * R, math.sin(angle) * 0.45 * R
        disc(X, Y, R, 255)
        disc(X + dx, Y + dy, 0.85 * R, 0)
    elif shape in _POLYGONS:
        c, sn = math.cos(angle), math.sin(angle)
        pts = _POLYGONS[shape] @ np.array([[c, sn], [-sn, c]]) * R + np.array([X, Y])
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    else:
        raise DatasetError(f"unknown shape '{shape}' (known: {', '.join(SHAPE_CLASSES)})")
    m = np.asarray(big, dtype=np.float32).reshape(size, s, size, s).mean(axis=(1, 3))
    return m / 255.0


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _colours(rng: np.random.Generator, gap: float) -> tuple[np.ndarray, np.ndarray]:
    while True:
        fg, bg = rng.random(3), rng.random(3)
        if abs(_luma(fg) - _luma(bg)) >= gap:
            return fg, bg


def _draw_one(rng: np.random.Generator, size: int, recipe: ShapesRecipe) -> tuple[np.ndarray, dict[str, Any]]:
    """One image (float ``size × size × 3`` in [0, 1]) and its factors."""
    label = int(rng.integers(len(SHAPE_CLASSES)))
    r = float(rng.uniform(*recipe.radius))
    cx, cy = (float(rng.uniform(r, 1 - r)) for _ in range(2))
    angle = float(rng.uniform(0, 2 * math.pi)) if recipe.rotation else 0.0
    fg, bg = _colours(rng, recipe.min_luma_gap)
    slopes = rng.uniform(-recipe.gradient, recipe.gradient, size=(2, 3))  # (x, y) x RGB
    sigma = float(rng.uniform(0, recipe.noise))
    mask = render_shape_mask(SHAPE_CLASSES[label], cx * size, cy * size, r * size, angle, size)[..., None]
    coords = (np.arange(size) + 0.5) / size * 2 - 1  # -1 .. 1 across the image
    background = bg + coords[None, :, None] * slopes[0] + coords[:, None, None] * slopes[1]
    image = background * (1 - mask) + fg * mask + rng.normal(0, sigma, size=(size, size, 3))
    factors = {
        "shape": label,
        "cx": cx,
        "cy": cy,
        "radius": r,
        "angle": angle,
        "fg_rgb": fg,
        "bg_rgb": bg,
        "bg_gradient": slopes.reshape(-1),
        "noise": sigma,
        "area": float(mask.mean()),
    }
    return np.clip(image, 0, 1), factors


def _make_split(name: str, split: str, n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    recipe = RECIPES[name]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = np.random.default_rng([seed, _SPLIT_ID[split], i])
        img, f = _draw_one(rng, size, recipe)
        images[i] = np.round(img * 255).astype(np.uint8)
        rows.append(f)
    out = {"images": images, "labels": np.array([f["shape"] for f in rows], dtype=np.int64)}
    for key in rows[0] if rows else ():
        if key != "shape":
            out[f"factor_{key}"] = np.asarray([f[key] for f in rows], dtype=np.float32)
    return out


def _sizes(opts: DatasetOptions) -> dict[str, int]:
    return {
        "train": opts.num_train or DEFAULT_SIZES["train"],
        "val": opts.num_val or DEFAULT_SIZES["val"],
        "test": opts.num_test or DEFAULT_SIZES["test"],
    }


def shapes_arrays(
    name: str, split: str, opts: DatasetOptions | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """``(uint8 N×S×S×3 images, int64 N labels, factors, recipe)`` of one split, generated once and cached."""
    opts = opts or DatasetOptions()
    if name not in RECIPES:
        raise DatasetError(f"unknown shapes set '{name}' (known: {', '.join(RECIPES)})")
    if split not in SPLITS:
        raise DatasetError(f"{name}: unknown split '{split}' (expected one of {', '.join(SPLITS)})")
    size = opts.image_size or 32
    n = _sizes(opts)[split]
    recipe = {"kind": name, **asdict(RECIPES[name]), "image_size": size, "seed": opts.seed, "split": split, "n": n}
    path = _recipe_cache(opts.cache_path(), f"{name}-{split}-{size}px", recipe)
    arrays = _load_cached_npz(path, lambda: _make_split(name, split, n, size, opts.seed))
    factors = {k[len("factor_") :]: v for k, v in arrays.items() if k.startswith("factor_")}
    return arrays["images"], arrays["labels"], factors, recipe


def shape_factors(split: str, opts: DatasetOptions | None = None, name: str = "shapes") -> dict[str, np.ndarray]:
    """The non-shape factors of every image of ``split``, in the order of ``load_dataset(name, split)``.

    Keys: ``cx``, ``cy`` (centre as a fraction of the side), ``radius`` (fraction of the side), ``angle``
    (radians; 0 for ``shapes-upright``), ``fg_rgb`` / ``bg_rgb`` (``N × 3`` in [0, 1]), ``bg_gradient``
    (``N × 6``: x-slopes then y-slopes per channel), ``noise`` (σ) and ``area`` (fraction of pixels covered).
    """
    return shapes_arrays(name, split, opts)[2]


def _shapes_builder(name: str):  # noqa: ANN202
    def build(split: str, opts: DatasetOptions) -> ClassificationSplit:
        images, labels, _, recipe = shapes_arrays(name, split, opts)
        return ClassificationSplit(
            name=name,
            split=split,
            classes=list(SHAPE_CLASSES),
            targets=labels,
            images=images,
            recipe={**recipe, "split_rule": "independent draws per split (seed, split, index)"},
            image_size=images.shape[1],
        )

    return build


register_dataset(
    "shapes",
    task="classification",
    description="10 procedural shapes, random rotation/position/scale/colours/gradient/noise (default)",
    embedded=True,
)(_shapes_builder("shapes"))
register_dataset(
    "shapes-upright",
    task="classification",
    description="shapes without rotation, larger radius (an easier variant)",
    embedded=True,
)(_shapes_builder("shapes-upright"))


# --------------------------------------------------------------------------------------------------
# shapes-det: COCO-format detection canvases
# --------------------------------------------------------------------------------------------------


def _make_shapes_det(out_dir: Path, opts: DatasetOptions) -> None:
    """Write ``images/<split>/*.png`` and ``annotations/instances_<split>.json`` under ``out_dir`` for train, val
    and, when ``det_test_images`` > 0, test (drawn independently: each image's generator is seeded by split).

    Each canvas has 1–4 shapes (circumradius 8–24 % of the side, any rotation, each with its own colour) over
    a gradient background with noise; boxes are the exact extent of each shape's rendered coverage
    (pixels ≥ 0.25 covered) and overlap no earlier box by IoU > 0.1. Later shapes are drawn on top.
    """
    from PIL import Image

    canvas = opts.det_canvas
    recipe = RECIPES["shapes"]
    categories = [{"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_CLASSES)]
    plan = {"train": opts.det_train_images, "val": opts.det_val_images}
    if opts.det_test_images:
        plan["test"] = opts.det_test_images
    for split, n_images in plan.items():
        img_dir = out_dir / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for img_id in range(1, n_images + 1):
            rng = np.random.default_rng([opts.seed, 10 + _SPLIT_ID[split], img_id])
            bg = rng.random(3)
            slopes = rng.uniform(-recipe.gradient, recipe.gradient, size=(2, 3))
            coords = (np.arange(canvas) + 0.5) / canvas * 2 - 1
            img = bg + coords[None, :, None] * slopes[0] + coords[:, None, None] * slopes[1]
            boxes: list[tuple[float, float, float, float]] = []
            for _ in range(int(rng.integers(1, 5))):
                for _attempt in range(20):
                    label = int(rng.integers(len(SHAPE_CLASSES)))
                    r = float(rng.uniform(0.08, 0.24)) * canvas
                    cx, cy = (float(rng.uniform(r, canvas - r)) for _ in range(2))
                    angle = float(rng.uniform(0, 2 * math.pi))
                    mask = render_shape_mask(SHAPE_CLASSES[label], cx, cy, r, angle, canvas)
                    ys, xs = np.nonzero(mask >= 0.25)
                    if len(ys) == 0:
                        continue
                    box = (float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1))
                    if any(box_iou(box, b) > 0.1 for b in boxes):
                        continue
                    fg = rng.random(3)
                    while abs(_luma(fg) - _luma(bg)) < recipe.min_luma_gap:
                        fg = rng.random(3)
                    img = img * (1 - mask[..., None]) + fg * mask[..., None]
                    boxes.append(box)
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": img_id,
                            "category_id": label,
                            "bbox": list(box),
                            "area": float((mask >= 0.25).sum()),
                            "iscrowd": 0,
                        }
                    )
                    break
            img = img + rng.normal(0, float(rng.uniform(0, recipe.noise)), size=img.shape)
            file_name = f"{img_id:06d}.png"
            Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(img_dir / file_name)
            images.append({"id": img_id, "file_name": file_name, "width": canvas, "height": canvas})
        coco = {"images": images, "annotations": annotations, "categories": categories}
        write_coco_json(out_dir, split, f"shapes-det {split}", _RECIPE_VERSION, coco)


@register_dataset(
    "shapes-det",
    task="detection",
    description="1-4 procedural shapes per 128-px canvas, exact boxes, COCO json + PNG (10 categories)",
    embedded=True,
    splits=("train", "val", "test"),  # test: only with det_test_images > 0
)
def _shapes_det(split: str, opts: DatasetOptions) -> DetectionSplit:
    return embedded_detection_split("shapes-det", split, opts, _RECIPE_VERSION, _make_shapes_det, list(SHAPE_CLASSES))
