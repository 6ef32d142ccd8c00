"""Interpretability measures of one backbone on ``shapes``, where every image's factors and mask are known.

``interpret_backbone(artifact, cfg)`` returns a flat ``dict[str, float]`` of measures (and, apart, the arrays
the pictures need). Every measure is defined in the module that owns its maths; here are only the choices:

- **occlusion** (``attribution``): the first ``occlusion_images`` test images, non-overlapping
  ``patch × patch`` patches (4 px on 32 px: an 8 × 8 grid), patch value 0 after normalisation (the
  normalisation mean), the score the cosine of the pooled feature to the unoccluded one. The mask is
  re-rendered from each image's factors (``zoo.datasets.shapes.render_shape_mask``).
  Keys: ``occ_in_mask``, ``occ_chance``, ``occ_in_mask_ratio`` (share / chance, per image, then averaged),
  ``pointing``, ``pointing_chance``.
- **channels** (``neurons``) of the pooled features: a logistic probe on standardised train features, its
  L2 strength chosen on val; importance = val accuracy drop when one channel is set to its mean; probes
  refitted (same L2) on the ``k`` most important channels, ``k`` in ``refit_ks``, give the curve of test
  accuracy against ``k`` and ``channels_half``: the smallest such ``k`` reaching half of the full probe's test
  accuracy above chance (a power of two: the resolution of the grid; ``channels_half_exact`` bisects below
  it). What the ``top_channels`` most important channels track on test: ``top_eta_shape`` (mean correlation
  ratio with the shape) and ``top_r_<factor>`` (mean ``|r|`` with each factor), with the same means over all channels
  (``all_eta_shape``, ``all_r_<factor>``) as the reference.
- probes and kNN banks use the first ``train_images`` training images (half the split, for time).
- **layers and heads**: kNN top-1 (k = 20, T = 0.07, train → test; the suite's kNN) of each ResNet stage
  (``knn_<layer>``) and, when the artifact carries BYOL's heads, of the projector and predictor outputs; on
  pool / projector / predictor also ridge R² (train → test, λ on val) of each nuisance factor
  (``r2_<factor>_<layer>``), as the ``nuisance`` evaluator does for the backbone.
- **t-SNE** (``figures.project_2d``: perplexity 30, PCA init, seeded) of the pooled features of the first
  ``tsne_images`` test images, with ``tsne_trustworthiness``, ``tsne_knn_2d`` and ``tsne_knn_features``
  (``maps.map_scores``).

Other datasets (``cfg.dataset`` not a shapes set: Fashion-MNIST, MNIST) have no known factors: the object
mask is then the non-black pixels (``object_masks``), η is taken with the class, and the factor measures
are left out.

Raw pixels have no stages or heads, and their 3,072 "channels" are pixels: channel, layer and ridge measures
are left out for them (ridge probes on 3,072 columns take minutes each; the suite's ``nuisance`` record has
them). Everything runs without gradients, modules in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from downstream.analysis.attribution import (
    in_mask_share,
    patch_coverage,
    patch_occlusion,
    pointing_chance,
    pointing_hits,
)
from downstream.analysis.embed import HEAD_LAYERS, artifact_heads, embed_images, head_features, to_unit_tensor
from downstream.analysis.maps import map_scores
from downstream.analysis.neurons import (
    abs_correlation,
    bisect_channels,
    channel_ablation_importance,
    channels_for_fraction,
    correlation_ratio,
    probe_accuracy,
)
from downstream.artifacts import RAW_PIXELS
from downstream.knn import knn_scores, topk_accuracy
from downstream.linear import fit_logistic_regression, fit_ridge, l2_grid, r2_score, standardize, sweep_l2
from zoo.artifact import ArtifactError

__all__ = [
    "InterpretConfig",
    "InterpretResult",
    "FACTORS",
    "scalar_factors",
    "shape_masks",
    "object_masks",
    "occlusion_measures",
    "occlusion_at_patch",
    "interpret_backbone",
]

FACTORS = ("fg_luma", "bg_luma", "cx", "cy", "radius", "area", "noise")  # scalar nuisance factors
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class InterpretConfig:
    """The stated choices of every measure (hashed into each cached record)."""

    dataset: str = "shapes"
    patch: int = 4  # occlusion patch side = stride (non-overlapping), pixels
    occlusion_images: int = 500  # first N test images
    knn_k: int = 20  # the suite's kNN (k 20, T 0.07)
    knn_temperature: float = 0.07
    train_images: int = 10000  # first N train images: the probes' training set and the kNN bank
    probe_l2: tuple[float, ...] = (1e-5, 1e-4, 1e-3)  # logistic probe grid, chosen on val
    probe_max_iter: int = 150
    refit_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # probes refitted on the top-k channels (and all)
    ridge_l2: tuple[float, ...] = tuple(l2_grid(1e-4, 1e4, 9))  # the nuisance evaluator's grid
    top_channels: int = 10
    half: float = 0.5
    tsne_images: int = 500  # first N test images
    tsne_seed: int = 0
    layers: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class InterpretResult:
    """Flat measures, plus the arrays the report's pictures use."""

    metrics: dict[str, float]
    curve: list[float] = field(default_factory=list)  # test accuracy of probes on the top-k channels, k in ks
    tsne_xy: np.ndarray | None = None  # tsne_images × 2
    occlusion: np.ndarray | None = None  # occlusion_images × G × G

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (arrays rounded: they only draw pictures)."""
        return {
            "metrics": self.metrics,
            "curve": [round(v, 5) for v in self.curve],
            "tsne_xy": None if self.tsne_xy is None else np.round(self.tsne_xy, 3).tolist(),
            "occlusion": None if self.occlusion is None else np.round(self.occlusion, 5).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InterpretResult:
        """Inverse of ``to_json``."""
        return cls(
            metrics={k: float(v) if v is not None else math.nan for k, v in d["metrics"].items()},
            curve=list(d.get("curve") or []),
            tsne_xy=None if d.get("tsne_xy") is None else np.asarray(d["tsne_xy"], dtype=np.float64),
            occlusion=None if d.get("occlusion") is None else np.asarray(d["occlusion"], dtype=np.float32),
        )


def config_dict(cfg: InterpretConfig) -> dict[str, Any]:
    """``cfg`` as plain JSON types (tuples → lists), for records and cache keys."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


SHAPES_SETS = ("shapes", "shapes-upright")
OBJECT_THRESHOLD = 0.02  # a pixel belongs to the object when its mean channel value exceeds this (≈ 5 / 255)


def object_masks(x01: torch.Tensor, threshold: float = OBJECT_THRESHOLD) -> torch.Tensor:
    """``N × S × S`` 0/1 object masks of images on a black background (Fashion-MNIST, MNIST): the pixels
    brighter than ``threshold`` (mean over channels, images in [0, 1])."""
    return (x01.mean(1) > threshold).float()


def scalar_factors(factors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scalar factors of ``FACTORS`` from ``zoo.datasets.shape_factors`` (colours reduced to luma)."""
    out = {k: np.asarray(factors[k], dtype=np.float64) for k in ("cx", "cy", "radius", "area", "noise")}
    out["fg_luma"] = np.asarray(factors["fg_rgb"], dtype=np.float64) @ _LUMA
    out["bg_luma"] = np.asarray(factors["bg_rgb"], dtype=np.float64) @ _LUMA
    return {k: out[k] for k in FACTORS}


def shape_masks(labels: np.ndarray, factors: dict[str, np.ndarray], size: int) -> torch.Tensor:
    """``N × size × size`` coverage masks of each image's shape, re-rendered from its factors."""
    from zoo.datasets.shapes import SHAPE_CLASSES, render_shape_mask

    masks = [
        render_shape_mask(
            SHAPE_CLASSES[int(labels[i])],
            float(factors["cx"][i]) * size,
            float(factors["cy"][i]) * size,
            float(factors["radius"][i]) * size,
            float(factors["angle"][i]),
            size,
        )
        for i in range(len(labels))
    ]
    return torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, size, size)


def _knn_top1(cfg: InterpretConfig, tr: torch.Tensor, ytr: torch.Tensor, te: torch.Tensor, yte: torch.Tensor) -> float:
    k = min(cfg.knn_k, len(tr))
    scores = knn_scores(tr, ytr, te, int(ytr.max()) + 1, [k], cfg.knn_temperature)
    return topk_accuracy(scores[k], yte, (1,))[1]


def _ridge_r2(
    cfg: InterpretConfig, feats: dict[str, torch.Tensor], targets: dict[str, dict[str, np.ndarray]]
) -> dict[str, float]:
    """Test R² per target of ridge probes on standardised features, λ chosen on val."""
    tr, va, te = standardize(feats["train"], feats["val"], feats["test"])
    out = {}
    for name, t in targets.items():
        y = {s: torch.from_numpy(np.asarray(t[s], dtype=np.float64).reshape(len(t[s]), -1)) for s in t}
        fits = [fit_ridge(tr, y["train"], l2) for l2 in cfg.ridge_l2]
        best = int(np.argmax([r2_score(va.double() @ W + b, y["val"]) for W, b in fits]))
        W, b = fits[best]
        out[name] = r2_score(te.double() @ W + b, y["test"])
    return out


@torch.no_grad()
def occlusion_measures(
    artifact: Any, x01: torch.Tensor, masks: torch.Tensor, patch: int
) -> tuple[dict[str, float], torch.Tensor]:
    """``occ_*`` and ``pointing*`` means over images ``x01`` (``N × 3 × S × S`` in [0, 1]) with coverage masks
    ``N × S × S``, and the sensitivities ``N × G × G`` (``attribution.patch_occlusion`` of the pooled feature)."""
    from downstream.analysis.embed import normalize

    xn = normalize(x01, artifact.meta.mean, artifact.meta.std)
    sens = patch_occlusion(lambda z: embed_images(artifact, z, "pool", normalized=True), xn, patch)
    cov = patch_coverage(masks, patch)
    share, area = in_mask_share(sens, cov), cov.flatten(1).mean(1)
    return {
        "occ_in_mask": float(np.nanmean(share.numpy())),
        "occ_chance": float(area.mean()),
        "occ_in_mask_ratio": float(np.nanmean((share / area).numpy())),
        "occ_images_moved": float(torch.isfinite(share).float().mean()),
        "pointing": float(np.nanmean(pointing_hits(sens, cov).numpy())),
        "pointing_chance": float(pointing_chance(cov).mean()),
    }, sens


@torch.no_grad()
def occlusion_at_patch(
    artifact: Any, cfg: InterpretConfig, patch: int, *, dataset_options: Any = None
) -> dict[str, float]:
    """The occlusion measures of ``interpret_backbone`` with another patch size (same images): a robustness check."""
    from zoo.datasets import DatasetOptions, load_dataset, shape_factors

    opts = dataset_options or DatasetOptions()
    artifact.model.eval()
    images, labels = load_dataset(cfg.dataset, "test", opts).arrays()
    n = min(cfg.occlusion_images, len(labels))
    fac = {k: v[:n] for k, v in shape_factors("test", opts, name=cfg.dataset).items()}
    masks = shape_masks(np.asarray(labels[:n]), fac, images.shape[1])
    return occlusion_measures(artifact, to_unit_tensor(images[:n]), masks, patch)[0]


@torch.no_grad()
def channels_half_exact(artifact: Any, cfg: InterpretConfig, *, dataset_options: Any = None) -> dict[str, float]:
    """``channels_half`` without the grid: the same probe, importance order and refits as
    ``interpret_backbone`` (so ``channels_half_grid`` repeats its ``channels_half``), then
    ``neurons.bisect_channels`` between the grid point below and the grid ``k``."""
    from zoo.datasets import DatasetOptions, load_dataset

    opts = dataset_options or DatasetOptions()
    artifact.model.eval()
    data = {}
    for split in ("train", "val", "test"):
        images, labels = load_dataset(cfg.dataset, split, opts).arrays()
        n = cfg.train_images if split == "train" else len(labels)
        data[split] = (to_unit_tensor(images[:n]), torch.from_numpy(np.asarray(labels[:n], dtype=np.int64)))
    y = {s: data[s][1] for s in data}
    pool = {s: embed_images(artifact, data[s][0], "pool") for s in data}
    chance = 1.0 / (int(y["train"].max()) + 1)
    tr, va, te = standardize(pool["train"], pool["val"], pool["test"])
    n_cls = int(y["train"].max()) + 1
    best, _, models = sweep_l2(tr, y["train"], va, y["val"], n_cls, list(cfg.probe_l2), max_iter=cfg.probe_max_iter)
    W, b = models[best]
    full = probe_accuracy(te, y["test"], W, b)
    order = channel_ablation_importance(va, y["val"], W, b).argsort(descending=True, stable=True)
    acc: dict[int, float] = {te.shape[1]: full}

    def refit(k: int) -> float:
        if k not in acc:
            keep = order[:k]
            Wk, bk = fit_logistic_regression(
                tr[:, keep], y["train"], n_cls, cfg.probe_l2[best], max_iter=cfg.probe_max_iter
            )
            acc[k] = probe_accuracy(te[:, keep], y["test"], Wk, bk)
        return acc[k]

    ks = [k for k in cfg.refit_ks if k < te.shape[1]] + [te.shape[1]]
    grid = channels_for_fraction(np.asarray([refit(k) for k in ks]), full, chance, cfg.half, ks=ks)
    target = chance + cfg.half * (full - chance)
    exact = grid
    if grid > 0 and refit(grid) >= target - 1e-12:  # else no k on the grid reaches it: keep the last k
        lo = max([k for k in ks if k < grid], default=0)
        exact = bisect_channels(refit, lo, grid, target)
    return {"channels_half_grid": float(grid), "channels_half_exact": float(exact), "probe_top1": full}


def interpret_backbone(artifact: Any, cfg: InterpretConfig, *, dataset_options: Any = None) -> InterpretResult:
    """Every measure of the module docstring for one loaded artifact (``downstream.artifacts.resolve_artifact``)."""
    from downstream.analysis.figures import project_2d
    from zoo.datasets import DatasetOptions, load_dataset, shape_factors

    opts = dataset_options or DatasetOptions()
    artifact.model.eval()
    raw = artifact.meta.architecture == RAW_PIXELS
    data = {}
    for split in ("train", "val", "test"):
        images, labels = load_dataset(cfg.dataset, split, opts).arrays()
        n = cfg.train_images if split == "train" else len(labels)
        data[split] = (to_unit_tensor(images[:n]), torch.from_numpy(np.asarray(labels[:n], dtype=np.int64)))
    known = cfg.dataset in SHAPES_SETS  # factors and masks known; else the object mask is the non-black pixels
    fac = {
        s: {k: v[: len(data[s][1])] for k, v in shape_factors(s, opts, name=cfg.dataset).items()} if known else {}
        for s in data
    }
    nuis = {s: scalar_factors(fac[s]) if known else {} for s in data}
    size = data["test"][0].shape[-1]
    y = {s: data[s][1] for s in data}
    pool = {s: embed_images(artifact, data[s][0], "pool") for s in data}
    chance = 1.0 / (int(y["train"].max()) + 1)
    m: dict[str, float] = {}

    # occlusion against the shape mask
    n_occ = min(cfg.occlusion_images, len(y["test"]))
    masks = (
        shape_masks(y["test"][:n_occ].numpy(), {k: v[:n_occ] for k, v in fac["test"].items()}, size)
        if known
        else object_masks(data["test"][0][:n_occ])
    )
    occ, sens = occlusion_measures(artifact, data["test"][0][:n_occ], masks, cfg.patch)
    m.update(occ)

    # channels of the pooled features
    curve: list[float] = []
    if raw:
        m.update({k: math.nan for k in ("probe_top1", "probe_val_top1", "channels_half", "dim")})
    else:
        tr, va, te = standardize(pool["train"], pool["val"], pool["test"])
        n_cls = int(y["train"].max()) + 1
        best, val_accs, models = sweep_l2(
            tr, y["train"], va, y["val"], n_cls, list(cfg.probe_l2), max_iter=cfg.probe_max_iter
        )
        W, b = models[best]
        full = probe_accuracy(te, y["test"], W, b)
        imp = channel_ablation_importance(va, y["val"], W, b)
        order = imp.argsort(descending=True, stable=True)
        ks = [k for k in cfg.refit_ks if k < te.shape[1]] + [te.shape[1]]
        for k in ks[:-1]:  # a probe refitted on the k most important channels only, the same L2 strength
            keep = order[:k]
            Wk, bk = fit_logistic_regression(
                tr[:, keep], y["train"], n_cls, cfg.probe_l2[best], max_iter=cfg.probe_max_iter
            )
            curve.append(probe_accuracy(te[:, keep], y["test"], Wk, bk))
        curve.append(full)
        m["probe_top1"] = full
        m["probe_val_top1"] = val_accs[best]
        m["probe_l2"] = float(cfg.probe_l2[best])
        m["channels_half"] = float(channels_for_fraction(np.asarray(curve), full, chance, cfg.half, ks=ks))
        m["dim"] = float(te.shape[1])
        m["top1_channel_drop"] = float(imp[order[0]])
        top = order[: cfg.top_channels].numpy()
        zt = pool["test"].numpy()
        eta = correlation_ratio(zt, y["test"].numpy())
        m["top_eta_shape"] = float(eta[top].mean())
        m["all_eta_shape"] = float(eta.mean())
        for name, values in nuis["test"].items():
            r = abs_correlation(zt, values)
            m[f"top_r_{name}"] = float(r[top].mean())
            m[f"all_r_{name}"] = float(r.mean())

    # layers (kNN) and heads (kNN + nuisance R²)
    layer_feats: dict[str, dict[str, torch.Tensor]] = {"pool": pool}
    if not raw:
        for layer in cfg.layers:
            layer_feats[layer] = {s: embed_images(artifact, data[s][0], layer) for s in data}
        try:
            heads = artifact_heads(artifact)
        except ArtifactError:  # meta.json lists heads whose file was not kept (the published ablation's runs)
            heads = {}
        for head in HEAD_LAYERS:
            if head in heads and "projector" in heads:
                layer_feats[head] = {s: head_features(artifact, pool[s], head) for s in data}
    targets = {name: {s: nuis[s][name] for s in data} for name in FACTORS} if known else {}
    for layer, feats in layer_feats.items():
        m[f"knn_{layer}"] = _knn_top1(cfg, feats["train"], y["train"], feats["test"], y["test"])
        if not raw and (layer == "pool" or layer in HEAD_LAYERS):  # raw pixels: the suite's nuisance record
            for name, r2 in _ridge_r2(cfg, feats, targets).items():
                m[f"r2_{name}_{layer}"] = r2

    # t-SNE with numbers
    n_map = min(cfg.tsne_images, len(y["test"]))
    z_map = pool["test"][:n_map]
    xy = project_2d(z_map, "tsne", cfg.tsne_seed)
    for k, v in map_scores(z_map.numpy(), xy, y["test"][:n_map].numpy()).items():
        m[f"tsne_{k}"] = v
    return InterpretResult(metrics=m, curve=curve, tsne_xy=xy, occlusion=sens.numpy())
