"""The analysis evaluators: ``geometry``, ``layerwise``, ``invariance`` and ``nuisance`` (the usual contract).

Each takes an ``EvalContext`` and its frozen config dataclass and returns a flat ``dict[str, float]``.
Metrics of the pooled backbone output carry no suffix; other layers are suffixed ``_<layer>`` (``layer1`` …
``layer4``, and ``projector`` / ``predictor`` when the artifact carries BYOL's heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from downstream.analysis.embed import (
    HEAD_LAYERS,
    available_layers,
    embed_images,
    head_features,
    split_features,
    to_unit_tensor,
)
from downstream.analysis.metrics import alignment, effective_rank, mean_cosine, std_normalized, uniformity
from downstream.analysis.views import FAMILIES, byol_view
from downstream.artifacts import RAW_PIXELS
from downstream.context import EvalContext
from downstream.features import FEATURE_LAYERS
from downstream.knn import knn_scores, topk_accuracy
from downstream.linear import fit_ridge, l2_grid, r2_score, standardize, sweep_l2
from downstream.registry import EvaluatorError, register_evaluator

__all__ = [
    "GeometryConfig",
    "LayerwiseConfig",
    "InvarianceConfig",
    "NuisanceConfig",
    "geometry",
    "layerwise",
    "invariance",
    "nuisance",
]


def _suffix(layer: str) -> str:
    return "" if layer == "pool" else f"_{layer}"


def _check_layers(layers: tuple[str, ...]) -> None:
    known = (*FEATURE_LAYERS, *HEAD_LAYERS)
    bad = [name for name in layers if name not in known]
    if not layers or bad:
        raise ValueError(f"layers must be a non-empty subset of {', '.join(known)}; unknown: {bad}")


def _check_probe_grid(l2_min: float, l2_max: float, l2_steps: int, max_iter: int) -> None:
    if l2_steps < 1 or max_iter < 1:
        raise ValueError("l2_steps and max_iter must be positive")
    if not 0 < l2_min <= l2_max:
        raise ValueError("need 0 < l2_min <= l2_max")


def _test_images(ctx: EvalContext, split: str, max_images: int) -> torch.Tensor:
    """The first ``max_images`` images of ``split`` as floats in [0, 1] (a fixed, reproducible subset)."""
    images, _ = ctx.load_split(split).arrays()
    return to_unit_tensor(images[:max_images])


def _embed_layers(ctx: EvalContext, x01: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Embeddings of ``x01`` at each layer; head layers reuse the pooled features."""
    out: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer in HEAD_LAYERS:
            if "pool" not in out:
                out["pool"] = embed_images(ctx.artifact, x01, "pool", device=ctx.device)
            out[layer] = head_features(ctx.artifact, out["pool"].to(ctx.device), layer).cpu()
        elif layer not in out:
            out[layer] = embed_images(ctx.artifact, x01, layer, device=ctx.device)
    return {k: out[k] for k in layers}


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeometryConfig:
    """Collapse / geometry diagnostics on ``split`` (features of the whole split; views of ``max_images``)."""

    split: str = "test"
    layers: tuple[str, ...] = ("pool",)
    heads: bool = True  # also the projector / predictor outputs when the artifact has them
    max_images: int = 512  # images whose two augmented views give alignment / uniformity
    alpha: float = 2.0  # Wang & Isola 2020, Eq. 4
    t: float = 2.0  # Wang & Isola 2020, Eq. 5

    def __post_init__(self) -> None:
        _check_layers(self.layers)
        if self.max_images < 2 or self.alpha <= 0 or self.t <= 0:
            raise ValueError("max_images must be ≥ 2, alpha and t positive")


@register_evaluator(
    "geometry",
    config=GeometryConfig,
    task="classification",
    frozen=True,
    selection_rule="no selection: fixed split, fixed image subset (first max_images), views seeded by the seed",
    # per layer (suffix _<layer> except for pool; the head layers depend on the artifact, hence the patterns)
    metrics=lambda cfg: [
        f"{m}{w}"
        for m in ("effective_rank", "std_normalized", "std_normalized_sqrt_d", "alignment", "uniformity", "dim")
        for w in ("", "_*")
    ],
)
def geometry(ctx: EvalContext, cfg: GeometryConfig) -> dict[str, float]:
    """Effective rank, std of l2-normalised features, alignment and uniformity per layer."""
    layers = available_layers(ctx.artifact, cfg.layers) if cfg.heads else list(cfg.layers)
    gen = torch.Generator().manual_seed(ctx.seed)
    x01 = _test_images(ctx, cfg.split, cfg.max_images)
    v1 = _embed_layers(ctx, byol_view(x01, gen), layers)
    v2 = _embed_layers(ctx, byol_view(x01, gen), layers)
    out: dict[str, float] = {}
    for layer in layers:
        z, _ = split_features(ctx, cfg.split, layer)
        s = _suffix(layer)
        out[f"effective_rank{s}"] = effective_rank(z)
        out[f"std_normalized{s}"] = std_normalized(z)
        # × sqrt(D): ≈ 1 for isotropic features whatever the width, 0 for collapse (comparable across layers)
        out[f"std_normalized_sqrt_d{s}"] = out[f"std_normalized{s}"] * math.sqrt(z.shape[1])
        out[f"alignment{s}"] = alignment(v1[layer], v2[layer], cfg.alpha)
        out[f"uniformity{s}"] = 0.5 * (uniformity(v1[layer], cfg.t) + uniformity(v2[layer], cfg.t))
        out[f"dim{s}"] = float(z.shape[1])
    return out


# --------------------------------------------------------------------------------------------------
# layerwise probing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerwiseConfig:
    """kNN and linear probe on each layer: train → test, the probe's L2 strength chosen on val."""

    layers: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
    heads: bool = True
    knn_k: int = 20  # Wu et al. 2018 Sec. 4.1 / DINO
    knn_temperature: float = 0.07
    linear: bool = True
    l2_min: float = 1e-6  # Kornblith et al. 2019 grid, coarser (one value per decade)
    l2_max: float = 1e5
    l2_steps: int = 12
    max_iter: int = 300

    def __post_init__(self) -> None:
        _check_layers(self.layers)
        if self.knn_k < 1 or self.knn_temperature <= 0:
            raise ValueError("knn_k and knn_temperature must be positive")
        _check_probe_grid(self.l2_min, self.l2_max, self.l2_steps, self.max_iter)


@register_evaluator(
    "layerwise",
    config=LayerwiseConfig,
    task="classification",
    frozen=True,
    selection_rule="kNN: fixed k and T; linear: L2 strength per layer chosen by val top-1, test reported once",
    units={p: "fraction" for p in ("knn_top1_*", "linear_top1_*", "linear_val_top1_*")},
    metrics=lambda cfg: ["knn_top1_*", "linear_top1_*", "linear_val_top1_*"],
)
def layerwise(ctx: EvalContext, cfg: LayerwiseConfig) -> dict[str, float]:
    """``knn_top1_<layer>`` and ``linear_top1_<layer>`` for every ResNet stage and head."""
    layers = available_layers(ctx.artifact, cfg.layers) if cfg.heads else list(cfg.layers)
    if ctx.artifact.meta.architecture == RAW_PIXELS:  # no stages: the pixels themselves are the one layer
        layers = ["pool"]
    num_classes = ctx.load_split("train").num_classes
    dev = ctx.device
    out: dict[str, float] = {}
    chosen: dict[str, float] = {}
    for layer in layers:
        x_tr, y_tr = split_features(ctx, "train", layer)
        x_te, y_te = split_features(ctx, "test", layer)
        y_tr_t, y_te_t = torch.from_numpy(y_tr).to(dev), torch.from_numpy(y_te).to(dev)
        scores = knn_scores(x_tr.to(dev), y_tr_t, x_te.to(dev), num_classes, [cfg.knn_k], cfg.knn_temperature)
        out[f"knn_top1_{layer}"] = topk_accuracy(scores[cfg.knn_k], y_te_t, (1,))[1]
        if cfg.linear:
            x_va, y_va = split_features(ctx, "val", layer)
            a, b, c = standardize(x_tr.to(dev), x_va.to(dev), x_te.to(dev))
            grid = l2_grid(cfg.l2_min, cfg.l2_max, cfg.l2_steps)
            y_va_t = torch.from_numpy(y_va).to(dev)
            best, val_accs, models = sweep_l2(a, y_tr_t, b, y_va_t, num_classes, grid, max_iter=cfg.max_iter)
            W, bias = models[best]
            out[f"linear_top1_{layer}"] = topk_accuracy(c @ W.t() + bias, y_te_t, (1,))[1]
            out[f"linear_val_top1_{layer}"] = val_accs[best]
            chosen[layer] = grid[best]
    if chosen:
        ctx.selection.update(split="val", criterion="linear val top-1", l2_per_layer=chosen)
    return out


# --------------------------------------------------------------------------------------------------
# augmentation invariance
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvarianceConfig:
    """Cosine similarity between an image's embedding and that of each transform family applied alone."""

    split: str = "test"
    layers: tuple[str, ...] = ("pool",)
    heads: bool = True
    families: tuple[str, ...] = tuple(FAMILIES)
    max_images: int = 256

    def __post_init__(self) -> None:
        _check_layers(self.layers)
        bad = [f for f in self.families if f not in FAMILIES]
        if not self.families or bad:
            raise ValueError(f"families must be a non-empty subset of {', '.join(FAMILIES)}; unknown: {bad}")
        if self.max_images < 2:
            raise ValueError("max_images must be ≥ 2")


@register_evaluator(
    "invariance",
    config=InvarianceConfig,
    task="classification",
    frozen=True,
    selection_rule="no selection: fixed image subset (first max_images), transform parameters seeded by the seed",
    metrics=lambda cfg: [f"cos_{f}{w}" for f in (*cfg.families, "other") for w in ("", "_*")],
)
def invariance(ctx: EvalContext, cfg: InvarianceConfig) -> dict[str, float]:
    """``cos_<family>`` per transform family and ``cos_other`` (two different images: the chance level).

    A high ``cos_<family>`` means invariance only when ``cos_other`` is clearly lower: a collapsed embedding
    has every cosine near 1.
    """
    layers = available_layers(ctx.artifact, cfg.layers) if cfg.heads else list(cfg.layers)
    x01 = _test_images(ctx, cfg.split, cfg.max_images)
    clean = _embed_layers(ctx, x01, layers)
    out: dict[str, float] = {}
    for i, family in enumerate(cfg.families):
        gen = torch.Generator().manual_seed(ctx.seed * 1000 + i)
        moved = _embed_layers(ctx, FAMILIES[family](x01, gen), layers)
        for layer in layers:
            out[f"cos_{family}{_suffix(layer)}"] = mean_cosine(clean[layer], moved[layer])
    shift = np.roll(np.arange(len(x01)), 1)  # each image against its neighbour in the split
    for layer in layers:
        out[f"cos_other{_suffix(layer)}"] = mean_cosine(clean[layer], clean[layer][shift])
    return out


# --------------------------------------------------------------------------------------------------
# nuisance factors (digits-m, shapes): how much of the representation is not the class
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NuisanceConfig:
    """Linear probes of a procedural set's non-class factors from frozen features: train → test, L2 on val.

    ``digits-m`` (``zoo.datasets.digit_m_nuisance``): which photo the background was cut from, where (crop
    centre x / y) and how large, the background's mean colour, and the digit's ink amount.
    ``shapes`` / ``shapes-upright`` (``zoo.datasets.shape_factors``): foreground and background colour, the
    background gradient, position (centre x / y), size (radius), rotation (cos / sin of the angle; shapes with
    rotational symmetry make it partly undecidable), pixel-noise σ and covered area.
    """

    layers: tuple[str, ...] = ("pool",)
    heads: bool = False
    l2_min: float = 1e-4  # ridge / logistic strengths on standardised features, one per decade
    l2_max: float = 1e4
    l2_steps: int = 9
    max_iter: int = 300

    def __post_init__(self) -> None:
        _check_layers(self.layers)
        _check_probe_grid(self.l2_min, self.l2_max, self.l2_steps, self.max_iter)


_NUISANCE_TARGETS = ("bg_x", "bg_y", "bg_scale", "bg_rgb", "ink")
_SHAPE_TARGETS = ("fg_rgb", "bg_rgb", "bg_gradient", "cx", "cy", "radius", "rotation", "noise", "area")
NUISANCE_DATASETS = ("digits-m", "shapes", "shapes-upright")


def _nuisance_factors(
    ctx: EvalContext,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """``(class factors, continuous factors)`` of the context's dataset, each ``{factor: {split: array}}``.

    Class factors are probed by logistic regression (reported as ``<name>_top1``), continuous ones by ridge
    (``<name>_r2``). The dataset's own label is added by the caller (``digit`` / ``shape``).
    """
    opts = ctx.dataset_options
    splits = ("train", "val", "test")
    if ctx.dataset == "digits-m":
        from zoo.datasets import digit_m_nuisance

        size, seed = opts.image_size or 32, opts.seed
        f = {s: digit_m_nuisance(s, size, seed, opts.cache_path()) for s in splits}
        return {"photo": {s: f[s]["photo"] for s in splits}}, {
            n: {s: f[s][n] for s in splits} for n in _NUISANCE_TARGETS
        }
    from zoo.datasets import shape_factors

    f = {s: shape_factors(s, opts, name=ctx.dataset) for s in splits}
    for s in splits:
        angle = f[s]["angle"].astype(np.float64)
        f[s]["rotation"] = np.stack([np.cos(angle), np.sin(angle)], 1)
    return {}, {n: {s: f[s][n] for s in splits} for n in _SHAPE_TARGETS}


@register_evaluator(
    "nuisance",
    config=NuisanceConfig,
    task="classification",
    frozen=True,
    selection_rule="L2 strength per probe chosen by val accuracy / R², test reported once",
    units={"*_top1*": "fraction"},  # <class factor>_top1[_<layer>]; R² has no unit
    metrics=lambda cfg: ["*_top1", "*_top1_*", "*_r2", "*_r2_*"],  # the factors depend on the dataset
)
def nuisance(ctx: EvalContext, cfg: NuisanceConfig) -> dict[str, float]:
    """``<factor>_r2`` (0 = not linearly decodable) and ``<class factor>_top1`` per layer.

    digits-m: ``photo_top1`` (2 photos; chance ≈ 0.5), ``bg_*_r2``, ``ink_r2``. shapes: ``fg_rgb_r2``,
    ``bg_rgb_r2``, ``cx_r2`` … (``NuisanceConfig``). The class itself (``digit_top1`` / ``shape_top1``) is
    read by the same kind of probe, for comparison: a representation that tracks a nuisance better than the
    initialisation does while tracking the class worse has learnt a shortcut.
    """
    if ctx.dataset not in NUISANCE_DATASETS:
        raise EvaluatorError(
            f"the nuisance evaluator needs a dataset whose factors are known ({', '.join(NUISANCE_DATASETS)}), "
            f"got '{ctx.dataset}'"
        )
    class_factors, targets = _nuisance_factors(ctx)
    label_name = "digit" if ctx.dataset == "digits-m" else "shape"
    layers = available_layers(ctx.artifact, cfg.layers) if cfg.heads else list(cfg.layers)
    grid = l2_grid(cfg.l2_min, cfg.l2_max, cfg.l2_steps)
    dev = ctx.device
    out: dict[str, float] = {}
    chosen: dict[str, float] = {}
    splits = ("train", "val", "test")
    classes: dict[str, dict[str, np.ndarray]] = {**class_factors, label_name: {}}
    for layer in layers:
        feats = {}
        for s in splits:
            feats[s], classes[label_name][s] = split_features(ctx, s, layer)
        tr, va, te = (t.to(dev) for t in standardize(feats["train"], feats["val"], feats["test"]))
        sfx = _suffix(layer)
        for name, labels in classes.items():  # multinomial logistic probes
            y = {s: torch.from_numpy(np.asarray(labels[s], dtype=np.int64)).to(dev) for s in splits}
            k = max(int(v.max()) for v in y.values()) + 1
            best, _, models = sweep_l2(tr, y["train"], va, y["val"], k, grid, max_iter=cfg.max_iter)
            W, b = models[best]
            out[f"{name}_top1{sfx}"] = topk_accuracy(te @ W.t() + b, y["test"], (1,))[1]
            chosen[f"{name}{sfx}"] = grid[best]
        for name, values in targets.items():  # ridge probes, R² of the held-out split
            t = {
                s: torch.from_numpy(np.asarray(values[s]).reshape(len(values[s]), -1)).double().to(dev) for s in splits
            }
            fits = [fit_ridge(tr, t["train"], l2) for l2 in grid]
            best = int(np.argmax([r2_score(va.double() @ W + b, t["val"]) for W, b in fits]))
            W, b = fits[best]
            out[f"{name}_r2{sfx}"] = r2_score(te.double() @ W + b, t["test"])
            chosen[f"{name}{sfx}"] = grid[best]
    ctx.selection.update(split="val", criterion="val top-1 / R²", l2_per_probe=chosen)
    return out
