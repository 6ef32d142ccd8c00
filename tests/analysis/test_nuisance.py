"""The ``nuisance`` evaluator and what it rests on: ridge maths and the replayed ``digits-m`` backgrounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from downstream.analysis.evaluators import NuisanceConfig, nuisance
from downstream.context import EvalContext
from downstream.linear import fit_ridge, r2_score
from downstream.registry import EvaluatorError, get_evaluator
from zoo.artifact import Artifact, ArtifactMeta
from zoo.datasets import DatasetOptions, _digit_m_backgrounds, _photos, digit_arrays, digit_m_nuisance, split_indices


def test_ridge_recovers_a_linear_map_and_r2_reads_it() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=gen)
    w = torch.randn(6, 2, generator=gen)
    y = x @ w + torch.tensor([1.5, -2.0]) + 0.01 * torch.randn(400, 2, generator=gen)
    W, b = fit_ridge(x, y, 1e-8)
    assert torch.allclose(W.float(), w, atol=5e-3) and torch.allclose(b.float(), torch.tensor([1.5, -2.0]), atol=5e-3)
    assert r2_score(x.double() @ W + b, y) > 0.999
    assert r2_score(y.mean(0, keepdim=True).expand_as(y), y) == pytest.approx(0.0, abs=1e-12)
    W_strong, _ = fit_ridge(x, y, 1e6)  # a huge penalty shrinks the map to ~0
    assert W_strong.abs().max() < 1e-4


def test_replayed_backgrounds_are_the_ones_under_the_images(tmp_path: Path) -> None:
    size = 16
    images, labels, _ = digit_arrays("digits-m", size, 0, tmp_path)
    gray, _, _ = digit_arrays("digits", size, 0, tmp_path)
    bg, boxes = _digit_m_backgrounds(len(labels), size, 0)
    photos = _photos()
    for i in (0, 1, 500, 1796):  # the box says where the crop was cut: cut it again from the photo
        p, y, x, side = boxes[i]
        crop = Image.fromarray(photos[p][y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        assert np.array_equal(np.asarray(crop), bg[i])
    composed = np.abs(bg.astype(np.int16) - gray[..., :1].astype(np.int16)).astype(np.uint8)
    assert np.array_equal(composed, images)  # |photo crop − digit|: the digits-m recipe
    n = digit_m_nuisance("val", size, 0, tmp_path)
    idx = split_indices(labels)["val"]
    assert np.array_equal(n["photo"], boxes[idx, 0]) and set(n["photo"]) == {0, 1}
    assert np.allclose(n["bg_rgb"], bg[idx].reshape(len(idx), -1, 3).mean(1) / 255)
    assert all(((n[k] > 0) & (n[k] < 1)).all() for k in ("bg_x", "bg_y", "bg_scale", "ink"))


class Pixels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2).flatten(1)


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), 16) + 0.0 * x.mean()


def _ctx(model: nn.Module, dim: int, tmp_path: Path, dataset: str = "digits-m") -> EvalContext:
    meta = ArtifactMeta(architecture="toy", feature_dim=dim, input_size=16, method="toy", weights_sha256=f"toy-{dim}")
    art = Artifact(path=Path(f"toy{dim}"), meta=meta, model=model.eval())
    opts = DatasetOptions(image_size=16, cache_dir=str(tmp_path / "data"))
    return EvalContext(art, dataset, opts, 0, torch.device("cpu"), tmp_path, tmp_path)


def test_pixels_carry_the_background_and_a_constant_carries_nothing(tmp_path: Path) -> None:
    assert get_evaluator("nuisance").frozen
    cfg = NuisanceConfig(l2_steps=3, max_iter=100)
    pix = nuisance(_ctx(Pixels(), 192, tmp_path), cfg)
    assert set(pix) == {"photo_top1", "digit_top1", "bg_x_r2", "bg_y_r2", "bg_scale_r2", "bg_rgb_r2", "ink_r2"}
    assert pix["photo_top1"] > 0.8 and pix["bg_rgb_r2"] > 0.8  # the background's colour is in the pixels
    const = nuisance(_ctx(Constant(), 16, tmp_path), cfg)
    assert const["photo_top1"] < 0.65 and const["digit_top1"] < 0.2  # majority class at best
    assert all(const[k] < 0.01 for k in const if k.endswith("_r2"))
    with pytest.raises(EvaluatorError, match="digits-m"):
        nuisance(_ctx(Pixels(), 192, tmp_path, dataset="digits"), cfg)


def test_shapes_factors_are_probed_from_pixels(tmp_path: Path) -> None:
    meta = ArtifactMeta(architecture="toy", feature_dim=192, input_size=16, method="toy", weights_sha256="toy-px")
    art = Artifact(path=Path("toy-px"), meta=meta, model=Pixels().eval())
    opts = DatasetOptions(image_size=16, cache_dir=str(tmp_path / "data"), num_train=300, num_val=100, num_test=100)
    ctx = EvalContext(art, "shapes", opts, 0, torch.device("cpu"), tmp_path, tmp_path)
    out = nuisance(ctx, NuisanceConfig(l2_steps=3, max_iter=100))
    expected = {"shape_top1"} | {
        f"{k}_r2" for k in ("fg_rgb", "bg_rgb", "bg_gradient", "cx", "cy", "radius", "rotation", "noise", "area")
    }
    assert set(out) == expected
    # the colours are most of the pixels: a linear read of (pooled) pixels recovers them; the rotation of a
    # shape is not a linear function of its pixels
    assert out["bg_rgb_r2"] > 0.8 and out["fg_rgb_r2"] > 0.3
    assert out["rotation_r2"] < 0.2
