"""Artifact → detectron2 backbone weights: architecture check, conversion, strict loading.

Decision on architectures: detection supports the artifacts whose ResNet detectron2 can represent
exactly (torchvision's standard stem: ``resnet18``, ``resnet50``, … — ``BackboneSpec.detectron2_compatible``).
The small-image stem (3×3 conv, no max-pool) would need a non-standard FPN stride layout, so it gets a
clear error instead of a silently different model.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from zoo.backbones import get_spec
from zoo.detectron2_format import save_detectron2_pkl, torchvision_to_detectron2

__all__ = ["DetectionWeightsError", "check_architecture", "resnet_settings", "export_pkl", "load_backbone_strict"]

_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}


class DetectionWeightsError(ValueError):
    """The artifact cannot be used for detection, or its weights do not match detectron2's ResNet."""


def _supported() -> list[str]:
    from zoo.backbones import BACKBONES

    return sorted(n for n, s in BACKBONES.items() if s.detectron2_compatible and s.torchvision_arch in _DEPTHS)


def check_architecture(architecture: str) -> dict[str, int]:
    """detectron2 ResNet settings for ``architecture``, or an error listing the supported ones."""
    spec = get_spec(architecture)
    if not spec.detectron2_compatible or spec.torchvision_arch not in _DEPTHS:
        raise DetectionWeightsError(
            f"architecture '{architecture}' (stem '{spec.stem}') cannot be represented by detectron2's "
            f"ResNet; detection supports: {', '.join(_supported())}"
        )
    return resnet_settings(spec.torchvision_arch)


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
