"""The shapes report states directions from the numbers: flip the numbers and the sentence flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.shapes_interpretability import Backbone
from benchmarks.shapes_report import write_report
from downstream.analysis.interpret import InterpretConfig

CFG = InterpretConfig(tsne_images=40)


def _measures(in_mask: dict[str, float], rng: np.random.Generator) -> tuple[list[Backbone], dict]:
    backbones, measures = [], {}
    for variant, level in in_mask.items():
        for seed in range(3):
            b = Backbone(variant, seed, f"runs/{variant}{seed}", f"sha-{variant}-{seed}")
            b.metrics = {"knn.top1_k20": level + 0.01 * seed, "linear.top1": level, "nuisance.bg_rgb_r2": 0.5}
            metrics = {
                "occ_in_mask": level + 0.005 * seed,
                "occ_chance": 0.2,
                "pointing": 0.4,
                "pointing_chance": 0.37,
                "tsne_trustworthiness": 0.99,
                "tsne_knn_2d": 0.3,
                "tsne_knn_features": 0.3,
                "dim": 16.0,
            }
            measures[b.name] = {
                "metrics": metrics,
                "curve": [],
                "tsne_xy": rng.normal(size=(40, 2)).tolist(),
                "occlusion": rng.random((8, 8, 8)).tolist(),
            }
            backbones.append(b)
    return backbones, measures


def test_the_occlusion_reading_follows_the_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    more = write_report(tmp_path / "a", *_measures({"byol": 0.5, "random-init": 0.25}, rng), {}, CFG)
    text = more.read_text()
    assert "BYOL looks at the shape more than random-init does" in text
    less = write_report(tmp_path / "b", *_measures({"byol": 0.25, "random-init": 0.5}, rng), {}, CFG)
    assert "BYOL looks at the shape less than random-init does" in less.read_text()
    same = write_report(tmp_path / "c", *_measures({"byol": 0.3, "random-init": 0.3}, rng), {}, CFG)
    assert "does not look at the shape more than random-init" in same.read_text()
    # the patch-size check: a larger patch where BYOL's lead disappears must say so
    bbs, ms = _measures({"byol": 0.5, "random-init": 0.25}, rng)
    checks = {b.name: {8: {"occ_in_mask": 0.3 + 0.01 * b.seed, "pointing": 0.5, "pointing_chance": 0.56}} for b in bbs}
    text8 = write_report(tmp_path / "d", bbs, ms, {}, CFG, patch_checks=checks).read_text()
    assert "4 px: more (0.505 vs 0.255, 50.00 stds); 8 px: no clear difference (0.310 vs 0.310, 0.00 stds)" in text8
    # a lead of 2-3 seed stds is called marginal, with its size
    close = write_report(tmp_path / "e", *_measures({"byol": 0.3, "random-init": 0.2888}, rng), {}, CFG)
    assert "more than random-init does — marginal: the page's rule" in close.read_text()
    assert "marginal" not in text.split("### Occlusion, quantified")[1].split("**Does the patch")[0]
    for heading in ("## 1. What does", "## 2. How does", "## 3. How can", "## 4. What does it mean"):
        assert heading in text
    assert (tmp_path / "a" / "figures" / "occlusion.png").is_file() and (tmp_path / "a" / "summary.json").is_file()


def test_slow_targets_are_placed_by_the_two_std_rule() -> None:
    from benchmarks.shapes_report import _Data, _knn_place

    levels = {"byol": 0.36, "random-init": 0.2, "tau-1": 0.21, "tau-0.999": 0.25}  # kNN seed std 0.01
    d = _Data(*_measures(levels, np.random.default_rng(0)))
    assert _knn_place(d, "tau-1").startswith("`tau-1` ≈ random-init")
    assert _knn_place(d, "tau-0.999").startswith("`tau-0.999` between random-init and byol")
