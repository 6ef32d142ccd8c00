"""The analysis evaluators on toy in-memory artifacts: a collapsed one (known answers) and raw-ish pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from downstream.analysis.embed import available_layers, head_features
from downstream.analysis.evaluators import (
    GeometryConfig,
    InvarianceConfig,
    LayerwiseConfig,
    geometry,
    invariance,
    layerwise,
)
from downstream.context import EvalContext
from downstream.knn import knn_predict, topk_accuracy
from downstream.registry import get_evaluator
from zoo.artifact import Artifact, ArtifactMeta
from zoo.datasets import DatasetOptions


class Constant(nn.Module):
    """Every image gets the same embedding: total collapse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), 16) + 0.0 * x.mean()


class Pixels(nn.Module):
    """2×2-average-pooled pixels, flattened (3 × 8 × 8 = 192-d at 16 px)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2).flatten(1)


def _ctx(model: nn.Module, dim: int, tmp_path: Path, name: str) -> EvalContext:
    meta = ArtifactMeta(architecture="toy", feature_dim=dim, input_size=16, method="toy", weights_sha256=f"toy-{name}")
    art = Artifact(path=Path(name), meta=meta, model=model.eval())
    return EvalContext(art, "digits", DatasetOptions(image_size=16), 0, torch.device("cpu"), tmp_path, tmp_path)


def test_registered() -> None:
    for name in ("geometry", "layerwise", "invariance"):
        assert get_evaluator(name).frozen
    with pytest.raises(ValueError, match="unknown"):
        GeometryConfig(layers=("layer9",))
    with pytest.raises(ValueError, match="unknown"):
        InvarianceConfig(families=("rotate",))


def test_collapsed_embedding_reads_collapsed(tmp_path: Path) -> None:
    ctx = _ctx(Constant(), 16, tmp_path, "constant")
    g = geometry(ctx, GeometryConfig(max_images=64))
    assert g["effective_rank"] == 0.0
    assert g["std_normalized"] == pytest.approx(0.0, abs=1e-7)
    assert g["alignment"] == pytest.approx(0.0, abs=1e-10)
    assert g["uniformity"] == pytest.approx(0.0, abs=1e-10)
    inv = invariance(ctx, InvarianceConfig(max_images=32))
    assert set(inv) == {"cos_crop", "cos_colour", "cos_blur", "cos_solarize", "cos_grayscale", "cos_other"}
    assert all(v == pytest.approx(1.0) for v in inv.values())


def test_pixels_are_spread_and_layerwise_knn_matches_the_one_knn(tmp_path: Path) -> None:
    ctx = _ctx(Pixels(), 192, tmp_path, "pixels")
    g = geometry(ctx, GeometryConfig(max_images=64))
    assert g["effective_rank"] > 5 and g["std_normalized_sqrt_d"] > 0.05
    assert 0 < g["alignment"] < 4 and g["uniformity"] < 0
    inv = invariance(ctx, InvarianceConfig(max_images=64))
    assert all(-1 <= v <= 1 for v in inv.values()) and inv["cos_other"] < 0.999
    out = layerwise(ctx, LayerwiseConfig(layers=("pool",), heads=False, l2_steps=3, max_iter=50))
    x_tr, y_tr = ctx.features("train")
    x_te, y_te = ctx.features("test")
    scores = knn_predict(x_tr, torch.from_numpy(y_tr), x_te, 10, k=20, temperature=0.07)
    assert out["knn_top1_pool"] == topk_accuracy(scores, torch.from_numpy(y_te), (1,))[1]
    assert out["knn_top1_pool"] > 0.8 and out["linear_top1_pool"] > 0.8  # digits pixels are easy
    assert ctx.selection["split"] == "val" and "pool" in ctx.selection["l2_per_layer"]


def test_head_layers_are_projector_then_predictor(tmp_path: Path) -> None:
    ctx = _ctx(Pixels(), 192, tmp_path, "pixels-heads")
    torch.manual_seed(0)
    proj, pred = nn.Sequential(nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 8)), nn.Linear(8, 8)
    ctx.artifact.__dict__["_analysis_heads"] = {"projector": proj.eval(), "predictor": pred.eval()}
    assert available_layers(ctx.artifact, ("pool",)) == ["pool", "projector", "predictor"]
    pool = torch.randn(5, 192)
    with torch.no_grad():
        assert torch.allclose(head_features(ctx.artifact, pool, "predictor"), pred(proj(pool)))
    g = geometry(ctx, GeometryConfig(max_images=32))
    assert g["dim_projector"] == 8 and g["effective_rank_predictor"] <= 8
    assert np.isfinite(list(g.values())).all()
