"""The backbone artifact: the only thing that passes from ``pretrain/`` to ``downstream/``.

An artifact is a directory::

    weights.safetensors   backbone state_dict, torchvision key names (no ``fc.*``)
    meta.json             ArtifactMeta below, including ``weights_sha256``

``save_artifact`` writes both into a temporary directory and renames it into place; ``load_artifact``
verifies the hash, the architecture and every tensor's shape before returning a ready, eval-mode module.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.backbones import BackboneError, build_backbone, get_spec
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD
from zoo.heads import MLPSpec, build_mlp
from zoo.io import (
    atomic_replace_dir,
    atomic_write_json,
    atomic_write_with,
    code_version,
    make_temp_dir,
    read_json,
    sha256_file,
    utc_now,
)

__all__ = [
    "ArtifactMeta",
    "Artifact",
    "ArtifactError",
    "save_artifact",
    "load_artifact",
    "load_heads",
    "read_meta",
    "WEIGHTS",
    "META",
]

WEIGHTS = "weights.safetensors"
HEADS = "heads.safetensors"
META = "meta.json"
FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """A missing file, hash mismatch, unknown architecture or shape mismatch in an artifact directory."""


@dataclass
class ArtifactMeta:
    """What an artifact is and what produced it (``meta.json``)."""

    architecture: str
    feature_dim: int
    input_size: int
    method: str  # "byol", "random-init", "supervised", ...
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str | None = None
    epochs: int | None = None
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. collapse diagnostics, which network
    code_version: dict[str, Any] = field(default_factory=code_version)
    created: str = field(default_factory=utc_now)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Artifact:
    path: Path
    meta: ArtifactMeta
    model: nn.Module

    @property
    def sha256(self) -> str:
        return self.meta.weights_sha256


def save_artifact(
    directory: str | os.PathLike,
    backbone: nn.Module,
    meta: ArtifactMeta,
    heads: dict[str, tuple[MLPSpec, nn.Module]] | None = None,
) -> Path:
    """Write ``backbone``'s weights and ``meta`` to ``directory`` atomically; return the directory.

    ``heads`` (optional) are MLPs on top of the backbone, e.g. ``{"projector": (spec, module)}``; they go
    to ``heads.safetensors`` with their specs and hash in ``meta.extra``.
    """
    from safetensors.torch import save_file

    spec = get_spec(meta.architecture)
    if meta.feature_dim != spec.feature_dim:
        raise ArtifactError(f"meta.feature_dim {meta.feature_dim} != {spec.feature_dim} of '{spec.name}'")
    directory = Path(directory)
    state = {
        k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items() if not k.startswith("fc.")
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{directory.name}.", directory.parent)
    try:
        # through atomic_write_with: safetensors writes 0600 files, which would ignore the umask
        atomic_write_with(
            tmp / WEIGHTS, lambda p: save_file(state, str(p), metadata={"architecture": meta.architecture})
        )
        extra = dict(meta.extra)
        if heads:
            head_state = {
                f"{name}.{k}": v.detach().cpu().contiguous().clone()
                for name, (_, module) in heads.items()
                for k, v in module.state_dict().items()
            }
            atomic_write_with(tmp / HEADS, lambda p: save_file(head_state, str(p)))
            extra["heads"] = {name: spec.to_dict() for name, (spec, _) in heads.items()}
            extra["heads_sha256"] = sha256_file(tmp / HEADS)
        meta = dataclasses.replace(meta, weights_sha256=sha256_file(tmp / WEIGHTS), extra=extra)
        atomic_write_json(tmp / META, meta.to_dict())
        atomic_replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_meta(directory: str | os.PathLike) -> ArtifactMeta:
    """Parse ``meta.json`` of an artifact directory (no weights loaded, no hash checked)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory not found: {directory}")
    meta_path = directory / META
    if not meta_path.is_file():
        raise ArtifactError(f"{directory} is not an artifact: {META} is missing")
    try:
        raw = read_json(meta_path)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    known = {f.name for f in dataclasses.fields(ArtifactMeta)}
    missing = [k for k in ("architecture", "feature_dim", "input_size", "method") if k not in raw]
    if missing:
        raise ArtifactError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ArtifactError(f"{meta_path}: unknown key '{unknown[0]}'")
    for key in ("mean", "std"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return ArtifactMeta(**raw)


def load_artifact(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> Artifact:
    """Load and verify an artifact; return it with an eval-mode backbone on ``map_location``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_meta(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{directory}: {WEIGHTS} is missing")
    digest = sha256_file(weights)
    if digest != meta.weights_sha256:
        raise ArtifactError(
            f"{weights}: sha256 {digest[:12]}… does not match meta.json's {meta.weights_sha256[:12]}… "
            "(file corrupted or replaced)"
        )
    try:
        model = build_backbone(meta.architecture)
    except BackboneError as exc:
        raise ArtifactError(f"{directory / META}: {exc}") from exc
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{weights}: unreadable safetensors file ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{weights}: keys do not fit '{meta.architecture}' (missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ArtifactError(
                f"{weights}: '{k}' has shape {tuple(v.shape)}, '{meta.architecture}' expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.to(map_location).eval()
    return Artifact(path=directory, meta=meta, model=model)


def load_heads(artifact: Artifact, map_location: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """The MLP heads stored with an artifact (``{}`` when it has none), hash-checked, in eval mode."""
    from safetensors.torch import load_file

    specs = artifact.meta.extra.get("heads") or {}
    if not specs:
        return {}
    path = artifact.path / HEADS
    if not path.is_file():
        raise ArtifactError(f"{artifact.path}: meta.json lists heads but {HEADS} is missing")
    if sha256_file(path) != artifact.meta.extra.get("heads_sha256"):
        raise ArtifactError(f"{path}: sha256 does not match meta.json (file corrupted or replaced)")
    state = load_file(str(path), device=str(map_location))
    out: dict[str, nn.Module] = {}
    for name, spec_dict in specs.items():
        module = build_mlp(MLPSpec(**spec_dict))
        prefix = f"{name}."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"{path}: head '{name}' does not fit its spec ({exc})") from exc
        out[name] = module.to(map_location).eval()
    return out
