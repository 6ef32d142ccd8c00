"""Resolve what ``--artifact`` names: an artifact directory, or the ``raw-pixels`` pseudo-artifact.

``raw-pixels`` stands for "no backbone at all": its "features" are the flattened, normalised input pixels
(``3·S·S`` numbers at input size ``S``). Evaluated exactly like a real backbone, it puts in every table
how much a backbone adds over the input itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.artifact import Artifact, ArtifactMeta, load_artifact
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD
from zoo.io import sha256_bytes

__all__ = ["RAW_PIXELS", "RawPixels", "raw_pixels_artifact", "resolve_artifact", "artifact_identity"]

RAW_PIXELS = "raw-pixels"
_RAW_PIXELS_VERSION = 1  # bump if the raw-pixel features change: it is part of their identity (cache key)
DEFAULT_RAW_PIXELS_SIZE = 32


class RawPixels(nn.Module):
    """``B × 3 × S × S`` normalised images → ``B × 3·S·S`` features (no parameters, no buffers)."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.feature_dim = 3 * input_size * input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def raw_pixels_artifact(image_size: int | None = None) -> Artifact:
    """The ``raw-pixels`` pseudo-artifact at ``image_size`` (default 32 px), with a stable pseudo-hash."""
    size = int(image_size or DEFAULT_RAW_PIXELS_SIZE)
    if size < 1:
        raise ValueError(f"raw-pixels: image_size must be positive, got {size}")
    meta = ArtifactMeta(
        architecture=RAW_PIXELS,
        feature_dim=3 * size * size,
        input_size=size,
        method=RAW_PIXELS,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        epochs=0,
        config={"image_size": size},
    )
    # No weights file: the identity is the recipe itself, so the feature cache keys on it like on a sha256.
    meta.weights_sha256 = sha256_bytes(f"{RAW_PIXELS}:v{_RAW_PIXELS_VERSION}:{size}".encode())
    return Artifact(path=Path(RAW_PIXELS), meta=meta, model=RawPixels(size).eval())


def resolve_artifact(
    artifact: str | os.PathLike | Artifact,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
) -> Artifact:
    """An ``Artifact`` from a directory path, the string ``"raw-pixels"``, or an already loaded one.

    ``image_size`` only matters for ``raw-pixels`` (a real artifact carries its input size in its meta).
    The backbone is returned in eval mode on ``device``.
    """
    if isinstance(artifact, Artifact):
        art = artifact
    elif str(artifact) == RAW_PIXELS:
        art = raw_pixels_artifact(image_size)
    else:
        art = load_artifact(artifact, map_location="cpu")
    art.model.to(device).eval()
    return art


def artifact_identity(artifact: Any) -> dict[str, Any]:
    """What identifies an artifact's features: weights sha256 (plus its heads' sha256 when it has heads)."""
    ident: dict[str, Any] = {"sha256": artifact.sha256, "architecture": artifact.meta.architecture}
    heads_sha = (artifact.meta.extra or {}).get("heads_sha256")
    if heads_sha:
        ident["heads_sha256"] = heads_sha
    return ident
