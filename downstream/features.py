"""Frozen features, extracted once and shared by every feature-based evaluator.

``get_features(ctx, split, layer)`` returns ``(N × D float32 CPU tensor, int64 labels)`` for one split of the
context's dataset. The first call runs the frozen backbone (batched, ``torch.no_grad()``, eval mode,
progress bar) and writes the result to ``<cache_dir>/features/``; later calls, from any process, read it back.

The cache key is the identity of everything that determines the numbers:

- the artifact (weights sha256, plus its heads' sha256 when it has heads),
- the dataset split (name, split, size and generation recipe),
- the transform (input size, normalisation mean/std),
- the layer, and ``FEATURES_VERSION`` (bump it when extraction code changes).

Files are written atomically (temporary file + rename) and verified on read: the stored key, shape and
sha256 of the arrays must match, otherwise the file is rebuilt.

Layers are a small registry: ``"pool"`` (the backbone output) and ``"layer1"`` … ``"layer4"`` (globally pooled
ResNet stages, ``zoo.backbones.stage_features``). Other layers (e.g. an artifact's projector head) plug in
with ``register_feature_layer(name)(fn)``, where ``fn(artifact, x) -> B × D`` runs under no_grad in eval mode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downstream.artifacts import RAW_PIXELS, artifact_identity
from downstream.registry import EvaluatorError
from zoo.backbones import stage_features
from zoo.baselines import to_normalized_tensor
from zoo.datasets import ClassificationSplit
from zoo.io import atomic_write_with, sha256_bytes, stable_hash

__all__ = [
    "FEATURE_LAYERS",
    "FEATURES_VERSION",
    "FeatureError",
    "register_feature_layer",
    "get_features",
    "get_labelled_features",
    "extract_features",
    "feature_cache_key",
    "feature_cache_path",
]

log = logging.getLogger(__name__)

FEATURES_VERSION = 1
DEFAULT_BATCH_SIZE = 256

LayerFn = Callable[[Any, torch.Tensor], torch.Tensor]
FEATURE_LAYERS: dict[str, LayerFn] = {}


class FeatureError(EvaluatorError):
    """A layer the artifact does not have, or features whose shape does not fit what was expected."""


def register_feature_layer(name: str) -> Callable[[LayerFn], LayerFn]:
    """Register ``fn(artifact, x: B×3×H×W normalised) -> B × D`` as feature layer ``name`` (no duplicates)."""

    def deco(fn: LayerFn) -> LayerFn:
        if name in FEATURE_LAYERS:
            raise ValueError(f"feature layer '{name}' is already registered")
        FEATURE_LAYERS[name] = fn
        return fn

    return deco


@register_feature_layer("pool")
def _pool(artifact: Any, x: torch.Tensor) -> torch.Tensor:
    return artifact.model(x)


def _stage(name: str) -> LayerFn:
    def fn(artifact: Any, x: torch.Tensor) -> torch.Tensor:
        if artifact.meta.architecture == RAW_PIXELS:
            raise FeatureError(f"layer '{name}' does not exist for raw-pixels (only 'pool')")
        return stage_features(artifact.model, x)[name]

    return fn


for _name in ("layer1", "layer2", "layer3", "layer4"):
    register_feature_layer(_name)(_stage(_name))


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


def extract_features(
    artifact: Any,
    images: np.ndarray,
    layer: str = "pool",
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    desc: str = "features",
) -> torch.Tensor:
    """Run the frozen backbone on uint8 ``N×H×W×3`` images; return ``N × D`` float32 on CPU.

    Batched, ``torch.no_grad()``, backbone in eval mode; normalised with ``mean``/``std`` (default: the
    artifact's own normalisation, i.e. what it was trained with).
    """
    from tqdm import tqdm

    if layer not in FEATURE_LAYERS:
        raise FeatureError(f"unknown feature layer '{layer}' (known: {', '.join(FEATURE_LAYERS)})")
    fn = FEATURE_LAYERS[layer]
    mean = tuple(mean if mean is not None else artifact.meta.mean)
    std = tuple(std if std is not None else artifact.meta.std)
    artifact.model.eval()
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=None):
            x = to_normalized_tensor(images[start : start + batch_size], mean, std).to(device)
            out = fn(artifact, x)
            chunks.append(out.detach().float().reshape(len(x), -1).cpu())
    if not chunks:
        return torch.zeros(0, 0)
    return torch.cat(chunks)


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def feature_cache_key(artifact: Any, split: ClassificationSplit, layer: str) -> dict[str, Any]:
    """Everything that determines the features of ``split`` (the identity the cache file is named by)."""
    return {
        "version": FEATURES_VERSION,
        "artifact": artifact_identity(artifact),
        "dataset": split.describe(),
        "transform": {
            "input_size": split.image_size,
            "mean": list(artifact.meta.mean),
            "std": list(artifact.meta.std),
        },
        "layer": layer,
    }


def feature_cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """``<cache_dir>/features/<sha256[:16]>/<dataset>-<split>-<layer>-<key hash>.safetensors``."""
    ds = key["dataset"]
    name = f"{ds['name']}-{ds['split']}-{key['layer']}-{stable_hash(key)}.safetensors"
    return Path(cache_dir) / "features" / key["artifact"]["sha256"][:16] / name


def _digest(features: torch.Tensor, labels: torch.Tensor) -> str:
    return sha256_bytes(features.contiguous().numpy().tobytes() + labels.contiguous().numpy().tobytes())


def _write_cache(path: Path, key: dict[str, Any], features: torch.Tensor, labels: np.ndarray) -> None:
    from safetensors.torch import save_file

    t_labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    meta = {
        "key": json.dumps(key, sort_keys=True),
        "shape": json.dumps(list(features.shape)),
        "sha256": _digest(features, t_labels),
    }
    atomic_write_with(
        path, lambda tmp: save_file({"features": features.contiguous(), "labels": t_labels}, str(tmp), metadata=meta)
    )


def _read_cache(path: Path, key: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray] | None:
    """The cached arrays, or ``None`` (with a warning) when the file is missing, unreadable or fails a check."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            features = fh.get_tensor("features")
            labels = fh.get_tensor("labels")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        log.warning("feature cache %s unreadable (%s): rebuilding", path, exc)
        return None
    problems = []
    if meta.get("key") != json.dumps(key, sort_keys=True):
        problems.append("key differs")
    if meta.get("shape") != json.dumps(list(features.shape)) or len(features) != key["dataset"]["size"]:
        problems.append(f"shape {tuple(features.shape)} unexpected")
    if len(labels) != len(features):
        problems.append("labels/features length differ")
    if not problems and meta.get("sha256") != _digest(features, labels):
        problems.append("sha256 mismatch")
    if problems:
        log.warning("feature cache %s failed verification (%s): rebuilding", path, "; ".join(problems))
        return None
    return features, labels.numpy()


def get_features(
    ctx: Any, split: str, layer: str = "pool", *, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[torch.Tensor, np.ndarray]:
    """Frozen features ``N × D`` (float32, CPU) and labels of ``split`` of ``ctx.dataset``, cached on disk.

    Memoised on ``ctx`` too, so one evaluation reads each file at most once.
    """
    memo = ctx.__dict__.setdefault("_feature_memo", {})
    if (split, layer) in memo:
        return memo[(split, layer)]
    if layer not in FEATURE_LAYERS:
        raise FeatureError(f"unknown feature layer '{layer}' (known: {', '.join(FEATURE_LAYERS)})")
    ds = ctx.load_split(split)
    if not isinstance(ds, ClassificationSplit):
        raise FeatureError(f"dataset '{ctx.dataset}' is not a classification dataset: no image features")
    key = feature_cache_key(ctx.artifact, ds, layer)
    path = feature_cache_path(ctx.cache_dir, key)
    cached = _read_cache(path, key)
    if cached is None:
        images, labels = ds.arrays()
        features = extract_features(
            ctx.artifact,
            images,
            layer,
            device=ctx.device,
            batch_size=batch_size,
            desc=f"{ctx.dataset}/{split} {layer}",
        )
        expected = ctx.artifact.meta.feature_dim
        if layer == "pool" and features.shape[1] != expected:
            raise FeatureError(
                f"artifact {ctx.artifact.path}: backbone output has {features.shape[1]} dims, "
                f"meta.json says feature_dim {expected} (artifact or input size inconsistent)"
            )
        _write_cache(path, key, features, labels)
        cached = (features, np.asarray(labels, dtype=np.int64))
    memo[(split, layer)] = cached
    return cached


def get_labelled_features(
    ctx: Any, split: str, layer: str = "pool", evaluator: str = "this evaluator"
) -> tuple[torch.Tensor, np.ndarray]:
    """``get_features`` that refuses a split without labels (every image must have a class)."""
    ds = ctx.load_split(split)
    if isinstance(ds, ClassificationSplit) and not ds.has_labels:
        raise EvaluatorError(
            f"{evaluator} needs labels, but split '{split}' of dataset '{ctx.dataset}' has "
            f"{int((ds.targets < 0).sum())} of {len(ds)} images without a label"
        )
    return get_features(ctx, split, layer)
