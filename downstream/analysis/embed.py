"""Embeddings of an artifact at any depth: a backbone stage, the pooled output, or through its heads.

Backbone layers (``pool``, ``layer1`` … ``layer4``) are the feature cache's registered layers
(``downstream.features.FEATURE_LAYERS``). Head layers apply the MLPs an artifact carries
(``zoo.artifact.load_heads``): ``projector = g(pool)`` and ``predictor = q(g(pool))`` (Grill et al. 2020,
Sec. 3.1), so they are computed from the cached ``pool`` features without touching the backbone again.
Everything runs under ``torch.no_grad()`` with modules in eval mode (BN uses its running statistics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from downstream.features import FEATURE_LAYERS, FeatureError

__all__ = [
    "HEAD_LAYERS",
    "artifact_heads",
    "available_layers",
    "to_unit_tensor",
    "normalize",
    "head_features",
    "embed_images",
    "split_features",
]

HEAD_LAYERS = ("projector", "predictor")


def artifact_heads(artifact: Any) -> dict[str, nn.Module]:
    """The artifact's heads (``{}`` for baselines and raw pixels), memoised on the artifact object."""
    from zoo.artifact import load_heads

    memo = artifact.__dict__.get("_analysis_heads")
    if memo is None:
        meta_extra = getattr(artifact.meta, "extra", None) or {}
        memo = load_heads(artifact) if meta_extra.get("heads") else {}
        artifact.__dict__["_analysis_heads"] = memo
    return memo


def available_layers(artifact: Any, backbone_layers: tuple[str, ...]) -> list[str]:
    """``backbone_layers`` followed by whichever of ``projector`` / ``predictor`` the artifact carries."""
    heads = artifact_heads(artifact)
    return list(backbone_layers) + [h for h in HEAD_LAYERS if h in heads and (h == "projector" or "projector" in heads)]


def to_unit_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``N × H × W × 3`` → float ``N × 3 × H × W`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x01: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    return (x01 - m) / s


@torch.no_grad()
def head_features(artifact: Any, pool: torch.Tensor, layer: str) -> torch.Tensor:
    """``projector`` (``g(pool)``) or ``predictor`` (``q(g(pool))``) outputs ``N × D`` from pooled features."""
    heads = artifact_heads(artifact)
    if layer not in HEAD_LAYERS or layer not in heads or "projector" not in heads:
        raise FeatureError(f"artifact {artifact.path} has no '{layer}' head (heads: {sorted(heads) or 'none'})")
    dev = pool.device
    z = heads["projector"].to(dev).eval()(pool)
    if layer == "predictor":
        z = heads["predictor"].to(dev).eval()(z)
    return z.float()


@torch.no_grad()
def embed_images(
    artifact: Any,
    x01: torch.Tensor,
    layer: str = "pool",
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    normalized: bool = False,
) -> torch.Tensor:
    """Embeddings ``N × D`` (float32, CPU) of float images in ``[0, 1]`` at ``layer`` (backbone or head);
    ``normalized=True``: the images are already normalised with the artifact's mean / std."""
    base = "pool" if layer in HEAD_LAYERS else layer
    if base not in FEATURE_LAYERS:
        raise FeatureError(f"unknown layer '{layer}' (known: {', '.join([*FEATURE_LAYERS, *HEAD_LAYERS])})")
    fn = FEATURE_LAYERS[base]
    artifact.model.eval()
    out = []
    for start in range(0, len(x01), batch_size):
        x = x01[start : start + batch_size]
        x = (x if normalized else normalize(x, artifact.meta.mean, artifact.meta.std)).to(device)
        f = fn(artifact, x).reshape(len(x), -1).float()
        if layer in HEAD_LAYERS:
            f = head_features(artifact, f, layer)
        out.append(f.cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def split_features(ctx: Any, split: str, layer: str) -> tuple[torch.Tensor, np.ndarray]:
    """Cached features of ``split`` at a backbone layer, or head outputs computed from the cached ``pool``."""
    if layer in HEAD_LAYERS:
        pool, labels = ctx.features(split, "pool")
        return head_features(ctx.artifact, pool.to(ctx.device), layer).cpu(), labels
    return ctx.features(split, layer)
