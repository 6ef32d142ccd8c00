"""Backbone registry: torchvision ResNets whose classifier is replaced by identity.

A registered builder takes no arguments and returns an ``nn.Module`` mapping ``B × 3 × H × W`` images to
``B × feature_dim`` pooled features. Its ``state_dict`` uses torchvision's key names without ``fc.*``, so
``torchvision.models.resnet18()`` loads it with ``strict=True`` after dropping ``fc`` (standard stem), and
detectron2 conversion (``stem``/``resN``) applies to every standard-stem entry.

- ``resnet18`` / ``resnet50``: torchvision's architecture unchanged (7×7 stride-2 stem + max-pool).
- ``resnet18-small``: 3×3 stride-1 stem without max-pool, the usual choice for 32-px images
  (SimCLR/solo-learn CIFAR variant). Detectron2 cannot represent this stem.
- ``resnet18-w32``: torchvision's ResNet-18 (standard stem, same key names and depth) at half width:
  stem 32 channels, stages 32/64/128/256, 256-d features. The default backbone for ``shapes`` on a CPU
  (about 3× the images/s of ``resnet18``; README *Backbones*). detectron2's own ResNet-18 requires 64-channel
  res2, so detection uses it through our backbone adapter (downstream/detection/backbone.py), not a ``.pkl``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BACKBONES", "BackboneSpec", "register_backbone", "build_backbone", "get_spec", "BackboneError"]


class BackboneError(ValueError):
    """Unknown architecture or weights that do not fit it."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    stem: str  # "standard" (torchvision) or "small" (3x3, no max-pool)
    torchvision_arch: str  # the torchvision constructor whose keys we share
    builder: Callable[[], nn.Module]
    width: int = 64  # stem / first-stage channels (torchvision: 64)

    @property
    def detectron2_compatible(self) -> bool:
        """Whether detectron2's own ResNet can hold these weights (a ``.pkl``): standard stem and widths."""
        return self.stem == "standard" and self.width == 64


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, feature_dim: int, stem: str, torchvision_arch: str, width: int = 64) -> Callable:
    """Register a no-argument builder; duplicate names are an error."""

    def deco(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in BACKBONES:
            raise ValueError(f"backbone '{name}' is already registered")
        BACKBONES[name] = BackboneSpec(name, feature_dim, stem, torchvision_arch, fn, width)
        return fn

    return deco


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone, or a ``BackboneError`` listing the known ones."""
    if name not in BACKBONES:
        raise BackboneError(f"unknown architecture '{name}' (known: {', '.join(sorted(BACKBONES))})")
    return BACKBONES[name]


def build_backbone(name: str) -> nn.Module:
    """A freshly initialised backbone (torchvision's default init) with ``.feature_dim`` set."""
    spec = get_spec(name)
    model = spec.builder()
    model.feature_dim = spec.feature_dim  # type: ignore[assignment]
    model.arch = name  # type: ignore[assignment]
    return model


def _torchvision_resnet(arch: str, small_stem: bool) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if small_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def _narrow_resnet18(width: int) -> nn.Module:
    """torchvision's ResNet-18 with stage widths ``width × (1, 2, 4, 8)``: same modules, key names and init."""
    from torchvision.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, [2, 2, 2, 2])
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    for i, mult in enumerate((1, 2, 4, 8)):
        setattr(model, f"layer{i + 1}", model._make_layer(BasicBlock, width * mult, 2, stride=1 if i == 0 else 2))
    for m in model.modules():  # torchvision's init, re-applied to the rebuilt modules
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    model.fc = nn.Identity()
    return model


register_backbone("resnet18", 512, "standard", "resnet18")(lambda: _torchvision_resnet("resnet18", False))
register_backbone("resnet50", 2048, "standard", "resnet50")(lambda: _torchvision_resnet("resnet50", False))
register_backbone("resnet18-small", 512, "small", "resnet18")(lambda: _torchvision_resnet("resnet18", True))
register_backbone("resnet18-w32", 256, "standard", "resnet18", width=32)(lambda: _narrow_resnet18(32))
register_backbone("resnet18-w16", 128, "standard", "resnet18", width=16)(lambda: _narrow_resnet18(16))


def stage_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Globally average-pooled output of each ResNet stage: ``{"layer1": B×64, …, "layer4": B×512}``."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
        out[name] = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
    return out
