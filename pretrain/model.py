"""The BYOL model of a pretraining config: online and target networks with their heads."""

from __future__ import annotations

import torch

from pretrain.byol import BYOL
from pretrain.config import PretrainConfig
from zoo.backbones import build_backbone
from zoo.heads import MLPSpec

__all__ = ["build_model", "head_specs"]


def head_specs(cfg: PretrainConfig, feature_dim: int) -> tuple[MLPSpec, MLPSpec | None]:
    """Projector ``feature_dim → hidden → out`` and predictor ``out → hidden → out`` (paper Sec. 3.3)."""
    h = cfg.heads
    projector = MLPSpec(feature_dim, h.projector_hidden, h.projector_out, h.projector_layers, h.batch_norm)
    predictor = (
        MLPSpec(h.projector_out, h.predictor_hidden, h.projector_out, h.predictor_layers, h.batch_norm)
        if cfg.byol.predictor
        else None
    )
    return projector, predictor


def build_model(cfg: PretrainConfig) -> BYOL:
    """Online and target networks, initialised from ``cfg.seed`` (the target starts as a copy)."""
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone.arch)
    projector, predictor = head_specs(cfg, backbone.feature_dim)
    return BYOL(backbone, projector, predictor)
