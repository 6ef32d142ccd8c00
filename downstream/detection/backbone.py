"""Any backbone of our registry as a detectron2 ``Backbone``: the adapter route to Faster R-CNN.

The ``.pkl`` route converts a standard torchvision ResNet into detectron2's own ``ResNet`` (MoCo's protocol,
``weights.py``); it cannot hold a ResNet that detectron2 does not build itself, such as ``resnet18-w32``
(detectron2's ResNet-18 needs 64-channel res2). The adapter wraps the torchvision-style module that
``zoo.backbones.build_backbone`` returns, with the artifact's weights loaded by ``zoo.artifact`` (sha256 and
shapes checked), and exposes its four stages as ``res2``–``res5`` to detectron2's FPN:

- ``ByolBenchResNet``: the bottom-up network; ``output_shape()`` reports each stage's channels and stride,
  measured by one forward pass at build time (a standard stem gives strides 4, 8, 16, 32);
- ``build_byol_bench_resnet_backbone`` / ``build_byol_bench_fpn_backbone``: builders for detectron2's
  ``BACKBONE_REGISTRY`` (``MODEL.BACKBONE.NAME``), reading ``MODEL.BYOL_BENCH.{ARCH, ARTIFACT, SHA256}``
  and, like detectron2's ResNet, ``MODEL.RESNETS.{NORM, OUT_FEATURES}`` and ``MODEL.BACKBONE.FREEZE_AT``.

Registration is explicit: ``register_backbones()`` (idempotent) is called where a model is built from a
config (``modeling.build_d2_config`` and each trial process), never as a side effect of importing a package.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

from zoo.artifact import load_artifact
from zoo.backbones import build_backbone, get_spec

__all__ = [
    "ByolBenchResNet",
    "build_byol_bench_resnet_backbone",
    "build_byol_bench_fpn_backbone",
    "register_backbones",
    "stage_geometry",
    "check_adapter_architecture",
    "adapter_architectures",
    "require_fpn_strides",
    "add_adapter_config",
    "ADAPTER_BUILDER_NAMES",
    "FPN_STRIDES",
    "AdapterError",
]

STAGES = ("res2", "res3", "res4", "res5")
_LAYERS = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}
FPN_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}  # what the FPN presets' P2–P6 anchors assume
_NORMS_WITH_BN_STATE = ("BN", "SyncBN", "FrozenBN", "nnSyncBN", "naiveSyncBN")


class AdapterError(ValueError):
    """The architecture, the artifact or the config cannot be used through the adapter."""


def stage_geometry(model: nn.Module, probe: int = 64) -> dict[str, ShapeSpec]:
    """Channels and stride of each stage output (``res2``–``res5``) of a torchvision-style ResNet.

    Measured with one ``probe × probe`` forward pass in eval mode (no BN statistics change), so a stem
    or width that the registry adds later is described as it is, not as assumed.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = _stages(model, torch.zeros(1, 3, probe, probe, device=next(model.parameters()).device))
    model.train(was_training)
    return {k: ShapeSpec(channels=v.shape[1], stride=probe // v.shape[-1]) for k, v in feats.items()}


def _stages(m: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    out = {}
    for name in STAGES:
        x = getattr(m, _LAYERS[name])(x)
        out[name] = x
    return out


def adapter_architectures() -> list[str]:
    """Registered architectures whose stages have the FPN strides (standard stem), for error messages."""
    from zoo.backbones import BACKBONES

    return sorted(n for n, s in BACKBONES.items() if s.stem == "standard")


def require_fpn_strides(arch: str, geometry: dict[str, ShapeSpec]) -> None:
    """An ``AdapterError`` unless the stage strides are 4, 8, 16, 32.

    The presets' FPN levels P2–P6 (and their anchor sizes) assume these strides. A stride-1 stem
    (``resnet18-small``) gives 1, 2, 4, 8: its P2 would see 16× the activations and its anchors would sit
    on the wrong levels, so it is refused rather than silently turned into a different detector.
    """
    strides = {k: s.stride for k, s in geometry.items()}
    if any(FPN_STRIDES[k] != s for k, s in strides.items()):
        raise AdapterError(
            f"architecture '{arch}' (stem '{get_spec(arch).stem}') has res2-res5 strides "
            f"{'/'.join(str(s) for s in strides.values())}; the FPN presets need "
            f"{'/'.join(str(s) for s in FPN_STRIDES.values())}. "
            f"Detection supports: {', '.join(adapter_architectures())}"
        )


def check_adapter_architecture(arch: str) -> dict[str, ShapeSpec]:
    """The stage geometry of a fresh ``arch``, or an ``AdapterError`` when the FPN presets cannot use it."""
    geometry = stage_geometry(build_backbone(arch))
    require_fpn_strides(arch, geometry)
    return geometry


def _convert_norms(module: nn.Module, norm: str) -> nn.Module:
    """Every ``BatchNorm2d`` of ``module`` replaced by ``get_norm(norm, C)`` with the same weights and statistics.

    ``BN`` keeps the module as it is (detectron2's ``BN`` is ``torch.nn.BatchNorm2d``).
    """
    if norm == "BN":
        return module
    if isinstance(module, nn.BatchNorm2d):
        new = get_norm(norm, module.num_features)
        state = {k: v for k, v in module.state_dict().items() if k in new.state_dict()}
        new.load_state_dict(state, strict=True)
        new.eps = module.eps
        if hasattr(new, "momentum"):
            new.momentum = module.momentum
        return new
    for name, child in module.named_children():
        new_child = _convert_norms(child, norm)
        if new_child is not child:
            module.add_module(name, new_child)
    return module


def _freeze(module: nn.Module) -> nn.Module:
    """As detectron2's ``CNNBlockBase.freeze``: no gradients, and BN as ``FrozenBatchNorm2d`` (fixed statistics)."""
    for p in module.parameters():
        p.requires_grad = False
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


class ByolBenchResNet(Backbone):
    """A registered torchvision-style ResNet (``conv1 bn1 relu maxpool layer1-4``) as a detectron2 backbone.

    Its modules keep the artifact's key names (``conv1.weight``, ``layer1.0.bn1.running_mean``, …), so the
    state dict under ``backbone.bottom_up`` is the artifact's own. ``freeze_at`` follows detectron2's
    ``ResNet.freeze``: 1 freezes the stem, ``k`` ≥ 2 the stem and res2..res``k``; frozen BN becomes
    ``FrozenBatchNorm2d``. ``norm`` is a detectron2 norm name whose layer holds BN statistics.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: str = "BN",
        freeze_at: int = 0,
        out_features: tuple[str, ...] | list[str] = STAGES,
    ) -> None:
        super().__init__()
        if norm not in _NORMS_WITH_BN_STATE:
            raise AdapterError(
                f"MODEL.RESNETS.NORM '{norm}': the artifact holds BatchNorm statistics, so the adapter supports "
                f"{', '.join(_NORMS_WITH_BN_STATE)}"
            )
        unknown = [f for f in out_features if f not in STAGES]
        if unknown or not out_features:
            raise AdapterError(f"out_features {list(out_features)}: the adapter provides {', '.join(STAGES)}")
        if not 0 <= freeze_at <= 5:
            raise AdapterError(f"FREEZE_AT must be in 0..5, got {freeze_at}")
        geometry = stage_geometry(model)
        for name in ("conv1", "bn1", "relu", "maxpool", *_LAYERS.values()):
            self.add_module(name, getattr(model, name))
        _convert_norms(self, norm)
        frozen = [["conv1", "bn1"], *([_LAYERS[s]] for s in STAGES)][:freeze_at]
        for names in frozen:
            for name in names:
                self.add_module(name, _freeze(getattr(self, name)))
        self._out_features = list(out_features)
        last = max(STAGES.index(f) for f in self._out_features)
        for s in STAGES[last + 1 :]:  # stages after the last output are not needed (as detectron2 prunes)
            delattr(self, _LAYERS[s])
        self._out_feature_channels = {k: geometry[k].channels for k in self._out_features}
        self._out_feature_strides = {k: geometry[k].stride for k in self._out_features}
        self.arch = getattr(model, "arch", "")
        self.tensors_loaded = 0  # set by the builder after checking the artifact's tensors

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for s in STAGES:
            if not hasattr(self, _LAYERS[s]):
                break
            x = getattr(self, _LAYERS[s])(x)
            if s in self._out_features:
                out[s] = x
        return out


def _check_loaded(adapter: ByolBenchResNet, state: dict[str, torch.Tensor], where: str) -> int:
    """Every artifact tensor the adapter keeps is in it with the artifact's value; return their count.

    BN step counters (``num_batches_tracked``, absent from ``FrozenBatchNorm2d``) and stages pruned after the
    last output feature are not compared.
    """
    mine = adapter.state_dict()
    pruned = {layer for layer in _LAYERS.values() if not hasattr(adapter, layer)}
    used = 0
    for k, v in state.items():
        if k.endswith("num_batches_tracked") or k.split(".")[0] in pruned:
            continue
        if k not in mine:
            raise AdapterError(f"{where}: tensor '{k}' has no place in the adapter")
        if not torch.equal(mine[k].detach().cpu(), v.detach().cpu().to(mine[k].dtype)):
            raise AdapterError(f"{where}: '{k}' differs from the artifact after loading")
        used += 1
    missing = sorted(k for k in mine if k not in state)
    if missing:
        raise AdapterError(f"{where}: adapter tensors not in the artifact: {missing[:5]} ({len(missing)})")
    return used


def build_adapter(cfg: CfgNode) -> ByolBenchResNet:
    """The adapter for ``cfg``: the artifact's backbone (or a fresh ``ARCH`` when ``ARTIFACT`` is empty)."""
    bb = cfg.MODEL.BYOL_BENCH
    artifact = str(bb.ARTIFACT or "")
    if artifact:
        art = load_artifact(artifact)  # sha256, architecture and shapes checked
        if bb.ARCH and art.meta.architecture != bb.ARCH:
            raise AdapterError(f"{artifact}: architecture '{art.meta.architecture}', config says '{bb.ARCH}'")
        if bb.SHA256 and art.sha256 != bb.SHA256:
            raise AdapterError(f"{artifact}: weights sha256 {art.sha256[:12]}… is not the evaluated {bb.SHA256[:12]}…")
        model = art.model
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        model, state = build_backbone(bb.ARCH), {}
    model.train()  # load_artifact returns eval mode; detectron2 sets the mode of the whole model itself
    adapter = ByolBenchResNet(
        model,
        norm=cfg.MODEL.RESNETS.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        out_features=tuple(cfg.MODEL.RESNETS.OUT_FEATURES),
    )
    adapter.tensors_loaded = _check_loaded(adapter, state, artifact) if state else 0
    return adapter


def build_byol_bench_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """``MODEL.BACKBONE.NAME: build_byol_bench_resnet_backbone``: the stages alone (``MODEL.RESNETS.OUT_FEATURES``)."""
    if input_shape.channels != 3:
        raise AdapterError(f"the adapter takes 3-channel images, got {input_shape.channels}")
    return build_adapter(cfg)


def build_byol_bench_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """``MODEL.BACKBONE.NAME: build_byol_bench_fpn_backbone``: the adapter under detectron2's FPN.

    The same FPN as detectron2's ``build_resnet_fpn_backbone`` (``MODEL.FPN.*``, max-pool P6).
    """
    bottom_up = build_byol_bench_resnet_backbone(cfg, input_shape)
    require_fpn_strides(bottom_up.arch, bottom_up.output_shape())
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


_BUILDERS = (build_byol_bench_resnet_backbone, build_byol_bench_fpn_backbone)
ADAPTER_BUILDER_NAMES = tuple(b.__name__ for b in _BUILDERS)


def register_backbones() -> None:
    """Put the adapter builders in detectron2's ``BACKBONE_REGISTRY`` (idempotent: the registry rejects repeats).

    Call it in every process that builds a model from a config naming them (each trial process does).
    """
    for builder in _BUILDERS:
        if builder.__name__ not in BACKBONE_REGISTRY:
            BACKBONE_REGISTRY.register(builder)


def add_adapter_config(cfg: CfgNode, arch: str = "", artifact: str | os.PathLike = "", sha256: str = "") -> None:
    """Add ``MODEL.BYOL_BENCH`` (the adapter's keys) to an unfrozen detectron2 config."""
    cfg.MODEL.BYOL_BENCH = CfgNode()
    cfg.MODEL.BYOL_BENCH.ARCH = arch
    cfg.MODEL.BYOL_BENCH.ARTIFACT = str(Path(artifact).resolve()) if artifact else ""
    cfg.MODEL.BYOL_BENCH.SHA256 = sha256
