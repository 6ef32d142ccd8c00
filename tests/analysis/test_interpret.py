"""The shapes interpretability step end to end on a toy backbone, and the suite reader's record matching."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.shapes_interpretability import attach_detection, collect_backbones
from benchmarks.shapes_report import fmt_ms, mean_std
from downstream.analysis.interpret import InterpretConfig, interpret_backbone, shape_masks
from zoo.artifact import Artifact, ArtifactMeta
from zoo.datasets import DatasetOptions, load_dataset, shape_factors

OPTS = DatasetOptions(num_train=300, num_val=150, num_test=120)


class MeanColourAndCorners(nn.Module):
    """Pooled feature = each channel's mean over the image and over each 16 × 16 quadrant (15-d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), nn.functional.avg_pool2d(x, 16).flatten(1)], 1)


def test_masks_are_the_images_own_shapes() -> None:
    # the generator stores each image's covered area; the re-rendered masks must cover the same
    _, labels = load_dataset("shapes", "test", OPTS).arrays()
    fac = shape_factors("test", OPTS)
    masks = shape_masks(labels, fac, 32)
    assert np.allclose(masks.mean((1, 2)).numpy(), fac["area"], atol=1e-5)


def test_interpret_backbone_on_a_toy_backbone() -> None:
    meta = ArtifactMeta(architecture="toy", feature_dim=15, input_size=32, method="toy", weights_sha256="toy")
    art = Artifact(path=Path("toy"), meta=meta, model=MeanColourAndCorners().eval())
    cfg = InterpretConfig(occlusion_images=20, tsne_images=60, train_images=300, layers=(), refit_ks=(1, 4))
    res = interpret_backbone(art, cfg, dataset_options=OPTS)
    m = res.metrics
    fac = shape_factors("test", OPTS)
    assert m["occ_chance"] == pytest.approx(float(fac["area"][:20].mean()), abs=1e-5)  # the masks' share
    assert 0 <= m["occ_in_mask"] <= 1 and 0 <= m["pointing"] <= 1 and m["occ_images_moved"] == 1.0
    assert res.occlusion.shape == (20, 8, 8) and (res.occlusion >= 0).all()
    assert len(res.curve) == 3 and res.curve[-1] == m["probe_top1"] and m["dim"] == 15
    assert m["channels_half"] in (0.0, 1.0, 4.0, 15.0)
    assert 0.5 < m["tsne_trustworthiness"] <= 1.0 and res.tsne_xy.shape == (60, 2)
    # the mean colour is in the features: a ridge probe reads the shape + background luma mix back
    assert m["r2_bg_luma_pool"] > 0.5
    assert "knn_projector" not in m  # no heads
    again = type(res).from_json(json.loads(json.dumps(res.to_json())))
    assert again.metrics == m and len(again.curve) == 3


def _record(
    folder: Path, name: str, evaluator: str, variant: str, seed: int, sha: str, metrics: dict, created: str
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {
        "evaluator": evaluator,
        "metrics": metrics,
        "created": created,
        "artifact": {"path": f"runs/{variant}{seed}/artifact", "sha256": sha},
        "benchmark": {"variant": variant, "seed": seed},
    }
    (folder / f"{name}.json").write_text(json.dumps(rec))


def test_suite_records_become_backbones_and_detection_follows_the_artifact(tmp_path: Path) -> None:
    rec = tmp_path / "suite" / "records"
    _record(rec, "a", "knn", "byol", 0, "s0", {"top1_k20": 0.4}, "2026-12-01")
    _record(rec, "b", "linear", "byol", 0, "s0", {"top1": 0.5}, "2026-12-01")
    _record(rec, "c", "knn", "random-init", 0, "r0", {"top1_k20": 0.2}, "2026-12-01")
    _record(rec, "d", "detection", "byol", 0, "s0", {"AP": 4.0}, "2026-12-01")
    new = tmp_path / "new-protocol"
    _record(new, "e", "detection", "byol", 0, "s0", {"AP": 9.0}, "2026-12-04")  # newer: wins
    _record(new, "f", "detection", "other", 5, "zz", {"AP": 1.0}, "2026-12-04")  # no such backbone
    bbs = collect_backbones(tmp_path / "suite")
    assert [b.name for b in bbs] == ["byol.s0", "random-init.s0"]
    assert bbs[0].metrics == {"knn.top1_k20": 0.4, "linear.top1": 0.5}
    assert attach_detection(bbs, [rec]) == 1 and bbs[0].metrics["det.AP"] == 4.0
    assert attach_detection(bbs, [rec, new]) == 1 and bbs[0].metrics["det.AP"] == 9.0
    assert "det.AP" not in bbs[1].metrics
    _record(rec, "g", "geometry", "byol", 0, "other-sha", {"effective_rank": 3.0}, "2026-12-01")
    with pytest.raises(ValueError, match="names artifact"):
        collect_backbones(tmp_path / "suite")


def test_mean_std_formatting() -> None:
    assert mean_std([1.0, 2.0, 3.0])[:2] == (2.0, 1.0)
    assert math.isnan(mean_std([1.0])[1]) and mean_std([float("nan")])[2] == 0
    assert fmt_ms([0.1, 0.3]) == "0.200 ± 0.141" and fmt_ms([0.5]) == "0.500" and fmt_ms([]) == "–"


def test_object_masks_are_the_non_black_pixels() -> None:
    from downstream.analysis.interpret import object_masks

    x = torch.zeros(2, 3, 8, 8)
    x[0, :, 2:5, 3:6] = 0.5  # a 3 × 3 grey object
    x[1, 0, 0, 0] = 0.03  # faint in one channel only: mean 0.01, below the threshold
    m = object_masks(x)
    assert m[0].sum() == 9 and m[0, 2:5, 3:6].all()
    assert m[1].sum() == 0
