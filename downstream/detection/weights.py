"""Artifact → detectron2 backbone weights: which route, architecture check, conversion, strict loading.

Two routes (``choose_route``):

- ``pkl`` (MoCo's protocol): the artifacts whose ResNet detectron2 represents exactly (torchvision's standard
  stem and widths: ``resnet18``, ``resnet50`` — ``BackboneSpec.detectron2_compatible``) are converted to a
  detectron2 ``.pkl`` and loaded strictly into detectron2's own ``ResNet``. The default for them.
- ``adapter`` (``backbone.py``): any registered backbone whose stages have strides 4–32 (e.g.
  ``resnet18-w32``) runs as it is, its artifact loaded by ``zoo.artifact``. Forced with ``route=adapter``.

The small-image stem (3×3 conv, no max-pool) gives strides 1–8, which the FPN presets cannot use, so it gets
a clear error on both routes instead of a silently different model.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from downstream.detection.backbone import adapter_architectures, check_adapter_architecture
from downstream.detection.config import ROUTES
from zoo.backbones import get_spec
from zoo.detectron2_format import save_detectron2_pkl, torchvision_to_detectron2

__all__ = [
    "DetectionWeightsError",
    "BackboneWeights",
    "ROUTES",
    "choose_route",
    "backbone_weights",
    "check_architecture",
    "resnet_settings",
    "export_pkl",
    "load_backbone_strict",
]

_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}


class DetectionWeightsError(ValueError):
    """The artifact cannot be used for detection, or its weights do not match detectron2's ResNet."""


def _supported() -> list[str]:
    from zoo.backbones import BACKBONES

    return sorted(n for n, s in BACKBONES.items() if s.detectron2_compatible and s.torchvision_arch in _DEPTHS)


def _pkl_compatible(architecture: str) -> bool:
    spec = get_spec(architecture)
    return spec.detectron2_compatible and spec.torchvision_arch in _DEPTHS


def check_architecture(architecture: str) -> dict[str, int]:
    """detectron2 ResNet settings for ``architecture`` (the ``.pkl`` route), or an error listing the supported ones."""
    spec = get_spec(architecture)
    if not _pkl_compatible(architecture):
        raise DetectionWeightsError(
            f"architecture '{architecture}' (stem '{spec.stem}', width {spec.width}) cannot be represented by "
            f"detectron2's ResNet; the .pkl route supports: {', '.join(_supported())}; the adapter "
            f"(route=auto or route=adapter): {', '.join(adapter_architectures())}"
        )
    return resnet_settings(spec.torchvision_arch)


def choose_route(architecture: str, requested: str = "auto") -> str:
    """``"pkl"`` or ``"adapter"`` for ``architecture``; ``auto`` keeps the ``.pkl`` route wherever it applies.

    Raises ``DetectionWeightsError`` (``.pkl`` requested for an architecture detectron2 cannot hold) or
    ``AdapterError`` (stage strides the FPN presets cannot use, e.g. ``resnet18-small``), naming what works.
    """
    if requested not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)}, got '{requested}'")
    if requested == "pkl" or (requested == "auto" and _pkl_compatible(architecture)):
        check_architecture(architecture)
        return "pkl"
    check_adapter_architecture(architecture)
    return "adapter"


@dataclass(frozen=True)
class BackboneWeights:
    """Where a trial's backbone weights come from: a converted ``.pkl`` or the artifact directory (adapter)."""

    route: str  # "pkl" | "adapter"
    architecture: str
    path: str  # the .pkl file, or the artifact directory
    sha256: str = ""  # the artifact's weights hash (the adapter re-checks it when loading)


def backbone_weights(route: str, artifact: Any, work_dir: str | Path) -> BackboneWeights:
    """The weights of ``artifact`` (a ``zoo.artifact.Artifact``) for ``route``: a ``.pkl`` written to ``work_dir``
    (``pkl``) or the artifact directory itself (``adapter``)."""
    arch = artifact.meta.architecture
    if route == "pkl":
        pkl = export_pkl(artifact.model, Path(work_dir) / "backbone_d2.pkl", sha256=artifact.sha256)
        return BackboneWeights("pkl", arch, str(pkl), artifact.sha256)
    if route != "adapter":
        raise ValueError(f"route must be 'pkl' or 'adapter' here, got '{route}'")
    path = Path(artifact.path)
    if not (path / "meta.json").is_file():
        raise DetectionWeightsError(
            f"the adapter loads the artifact from its directory, and '{path}' has no meta.json "
            "(save the backbone with zoo.artifact.save_artifact first)"
        )
    return BackboneWeights("adapter", arch, str(path.resolve()), artifact.sha256)


def resnet_settings(torchvision_arch: str) -> dict[str, int]:
    depth = _DEPTHS[torchvision_arch]
    # basic-block ResNets (18/34) have 64-channel res2 outputs; bottleneck ones 256
    return {"DEPTH": depth, "RES2_OUT_CHANNELS": 64 if depth < 50 else 256}


def export_pkl(model: nn.Module, path: str | Path, sha256: str = "") -> Path:
    """The artifact backbone as detectron2 ``.pkl`` (``zoo.detectron2_format``, the shared converter)."""
    return save_detectron2_pkl(path, model.state_dict(), extra={"artifact_sha256": sha256})


def _backbone_key(model_key: str, ckpt_keys: set[str]) -> str | None:
    """The converted key a model parameter corresponds to (``backbone.bottom_up.res2…`` → ``res2…``)."""
    parts = model_key.split(".")
    for i in range(len(parts)):
        if ".".join(parts[i:]) in ckpt_keys:
            return ".".join(parts[i:])
    return None


def _is_backbone_param(model_key: str) -> bool:
    if model_key.endswith("num_batches_tracked"):
        return False
    return model_key.startswith(("backbone.bottom_up.", "roi_heads.res5.")) or (
        model_key.startswith("backbone.") and ".fpn_" not in model_key and "top_block" not in model_key
    )


class _StrictCheckpointer(DetectionCheckpointer):
    """Records what detectron2's matching left out, so the caller can fail instead of logging it."""

    incompatible: Any = None

    def _load_model(self, checkpoint: Any) -> Any:
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_backbone_strict(model: nn.Module, pkl_path: str | Path) -> int:
    """Load a converted backbone ``.pkl`` with ``DetectionCheckpointer``; return the tensors loaded.

    Raises ``DetectionWeightsError`` when any backbone tensor of the model is missing from the file, a
    file tensor is unused, a shape differs, or a loaded value differs from the file.
    """
    model = getattr(model, "module", model)  # DDP
    with open(pkl_path, "rb") as f:
        ckpt = {k: torch.as_tensor(v) for k, v in pickle.load(f)["model"].items()}
    names = set(ckpt)
    expected = {k: v.shape for k, v in model.state_dict().items() if _is_backbone_param(k)}
    shape_errors = []
    for k, shape in expected.items():
        src = _backbone_key(k, names)
        if src is not None and tuple(ckpt[src].shape) != tuple(shape):
            shape_errors.append(f"{k}: model {tuple(shape)} vs file {tuple(ckpt[src].shape)}")
    if shape_errors:
        raise DetectionWeightsError(f"{pkl_path}: shape mismatch: " + "; ".join(shape_errors[:5]))
    cp = _StrictCheckpointer(model)
    cp.load(str(pkl_path))
    inc = cp.incompatible
    missing = sorted(k for k in getattr(inc, "missing_keys", []) if _is_backbone_param(k))
    missing += sorted(k for k in expected if _backbone_key(k, names) is None and k not in missing)
    unexpected = sorted(getattr(inc, "unexpected_keys", []))
    bad_shapes = list(getattr(inc, "incorrect_shapes", []))
    if missing or unexpected or bad_shapes:
        raise DetectionWeightsError(
            f"{pkl_path} does not fit the detectron2 backbone: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatches {bad_shapes[:5]}"
        )
    state = model.state_dict()
    used = set()
    for k in expected:
        src = _backbone_key(k, names)
        used.add(src)
        if not torch.equal(state[k].cpu(), ckpt[src].to(state[k].dtype)):
            raise DetectionWeightsError(f"{pkl_path}: '{k}' differs from the file after loading")
    unused = sorted(names - used)
    if unused:
        raise DetectionWeightsError(f"{pkl_path}: tensors not used by the detectron2 backbone: {unused[:5]}")
    return len(used)


def converted_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return torchvision_to_detectron2(model.state_dict())
