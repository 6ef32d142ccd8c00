"""Channel importance, factor correlations, 2-D map scores and rank correlations on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from downstream.analysis.maps import loo_knn_accuracy, loo_knn_r2, map_scores
from downstream.analysis.neurons import (
    abs_correlation,
    bisect_channels,
    channel_ablation_importance,
    channels_for_fraction,
    correlation_ratio,
    kept_accuracy_curve,
    probe_accuracy,
)
from downstream.analysis.transfer import exact_spearman_p, spearman, spearman_table


def _class_in_channel(n: int = 600, d: int = 8, informative: int = 5, k: int = 4) -> tuple:
    """Labels readable from channel ``informative`` only; the probe reads it (and a little noise elsewhere)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    x[:, informative] = (y.double() - (k - 1) / 2).float() * 2  # evenly spaced class levels
    # a probe that orders classes by that channel: logit_c = c·x - c²/... (hand-built, exact)
    levels = (torch.arange(k).double() - (k - 1) / 2) * 2
    W = torch.zeros(k, d)
    W[:, informative] = levels.float()
    b = (-(levels**2) / 2).float()  # argmax_c (levels_c · v − levels_c² / 2) = nearest level
    W[:, 0] = 0.01  # a useless channel with a small weight
    return x, y, W, b, informative, k


def test_a_channel_that_carries_the_class_is_the_most_important_and_enough_alone() -> None:
    x, y, W, b, informative, k = _class_in_channel()
    assert probe_accuracy(x, y, W, b) == 1.0
    imp = channel_ablation_importance(x, y, W, b)
    assert int(imp.argmax()) == informative
    assert imp[informative].item() == pytest.approx(1.0 - (y == (k // 2 - 1)).float().mean().item(), abs=0.05)
    others = torch.cat([imp[:informative], imp[informative + 1 :]])
    assert others.abs().max() <= 0.01
    order = imp.argsort(descending=True)
    curve = kept_accuracy_curve(x, y, W, b, order)
    assert curve[0] == 1.0 and curve[-1] == 1.0
    assert channels_for_fraction(curve, 1.0, 1 / k) == 1


def test_spread_information_needs_many_channels() -> None:
    # the class is the sign of the sum of 8 channels: any one channel alone is weak
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 8, generator=g)
    y = (x.sum(1) > 0).long()
    W = torch.stack([-torch.ones(8), torch.ones(8)])
    b = torch.zeros(2)
    curve = kept_accuracy_curve(x, y, W, b, torch.arange(8))
    assert curve[-1] == 1.0
    assert 3 <= channels_for_fraction(curve, 1.0, 0.5) <= 5  # half the gain above chance needs several
    assert channels_for_fraction(curve, 0.5, 0.5) == 0  # a probe at chance carries nothing
    assert channels_for_fraction(np.array([0.5, 0.6]), 1.0, 0.5, fraction=1.0) == 2  # never reached: all of them


def test_a_channel_that_copies_a_factor_is_that_factors_top_channel() -> None:
    rng = np.random.default_rng(0)
    n = 500
    factors = {"cx": rng.random(n), "radius": rng.random(n)}
    shape = rng.integers(0, 5, n)
    x = rng.normal(size=(n, 6))
    x[:, 2] = factors["cx"]  # a copy
    x[:, 4] = -3 * factors["radius"] + 1  # an affine copy (sign does not matter)
    x[:, 1] = shape * 10 + rng.normal(size=n) * 0.01  # tracks the categorical factor
    x[:, 5] = 7.0  # constant
    r_cx = abs_correlation(x, factors["cx"])
    assert int(np.argmax(r_cx)) == 2 and r_cx[2] == pytest.approx(1.0)
    r_rad = abs_correlation(x, factors["radius"])
    assert int(np.argmax(r_rad)) == 4 and r_rad[4] == pytest.approx(1.0)
    assert r_cx[5] == 0.0
    eta = correlation_ratio(x, shape)
    assert int(np.argmax(eta)) == 1 and eta[1] == pytest.approx(1.0, abs=1e-4)
    assert eta[0] < 0.2 and eta[5] == 0.0


def test_map_scores_of_a_faithful_and_a_scrambled_map() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    y = np.repeat(np.arange(3), 40)
    feats = centres[y] + rng.normal(scale=0.05, size=(120, 2))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    good = map_scores(feats, unit, y)  # the map is the (normalised) features themselves
    assert good["trustworthiness"] == pytest.approx(1.0)
    assert good["knn_2d"] == 1.0 and good["knn_features"] == 1.0
    bad = map_scores(feats, rng.permutation(unit), y)  # points moved to other points' places
    assert bad["trustworthiness"] < 0.7 and bad["knn_2d"] < 0.6
    assert loo_knn_accuracy(np.array([[0.0], [0.1], [5.0], [5.1], [5.2]]), np.array([0, 0, 1, 1, 1]), k=1) == 1.0


def test_spearman_on_known_orders() -> None:
    a = {f"b{i}": float(i) for i in range(6)}
    up = {f"b{i}": float(i**3) for i in range(6)}
    down = {f"b{i}": -float(i) for i in range(6)}
    assert spearman(a, up)["rho"] == pytest.approx(1.0)
    assert spearman(a, down)["rho"] == pytest.approx(-1.0)
    partial = {"b0": 1.0, "b1": float("nan"), "b2": 3.0}
    assert np.isnan(spearman(a, partial)["rho"]) and spearman(a, partial)["n"] == 2.0  # too few pairs
    table = spearman_table({"m": a}, {"knn": up, "det": {"b0": 1.0, "b1": 1.0, "b2": 1.0, "b3": 1.0}})
    assert table["m"]["knn"]["n"] == 6.0 and np.isnan(table["m"]["det"]["rho"])  # a constant target: no rho


def test_spearman_p_is_exact_for_few_backbones() -> None:
    # 4 perfectly ordered backbones: 2 of the 24 orders give |rho| = 1, so p = 1/12, not significant
    # (scipy's t-approximation says p = 0 here)
    a = {f"b{i}": float(i) for i in range(4)}
    s = spearman(a, {k: 10.0 * v for k, v in a.items()})
    assert s["rho"] == pytest.approx(1.0) and s["p"] == pytest.approx(2 / 24) and s["p"] > 0.05
    from benchmarks.shapes_report import _TRANSFER_MEASURES, _strong

    table = {key: {"det": s} for key, _ in _TRANSFER_MEASURES}
    assert _strong(table, "det") == []
    # the exact p agrees with a brute-force count on a case with ties, and with scipy for larger n
    xs, ys = [1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 1.0, 4.0, 3.0, 6.0]
    assert exact_spearman_p(xs, ys) == pytest.approx(spearman(dict(enumerate(xs)), dict(enumerate(ys)))["p"])
    rng = np.random.default_rng(0)
    x = {i: float(v) for i, v in enumerate(rng.random(40))}
    y = {i: v + float(rng.normal(0, 0.3)) for i, v in x.items()}
    assert 0 < spearman(x, y)["p"] < 0.01


def test_channels_for_fraction_on_a_coarse_grid_of_channel_counts() -> None:
    curve = np.array([0.2, 0.3, 0.5, 0.9])  # accuracies with 1, 4, 16, 64 channels; chance 0.1, full 0.9
    assert channels_for_fraction(curve, 0.9, 0.1, ks=[1, 4, 16, 64]) == 16  # 0.5 − 0.1 ≥ 0.4
    assert channels_for_fraction(curve, 0.9, 0.1, 0.25, ks=[1, 4, 16, 64]) == 4
    with pytest.raises(ValueError, match="channel counts"):
        channels_for_fraction(curve, 0.9, 0.1, ks=[1, 2])


def test_bisect_channels_finds_the_count_between_grid_points() -> None:
    asked: list[int] = []

    def acc(k: int) -> float:
        asked.append(k)
        return k / 100  # accuracy grows with the channels kept

    assert bisect_channels(acc, 8, 16, 0.11) == 11  # the grid said 16; 11 is the first count reaching 0.11
    assert len(asked) <= 3  # log2(16 - 8) refits
    assert bisect_channels(acc, 0, 1, 0.005) == 1  # nothing between the grid points
    assert bisect_channels(acc, 4, 8, 0.08) == 8  # only the grid point itself reaches it


def test_knn_r2_in_a_map_finds_the_factor_it_is_laid_out_by() -> None:
    rng = np.random.default_rng(0)
    factor = rng.random(300)
    other = rng.random(300)
    xy = np.stack([factor, rng.random(300) * 0.01], 1)  # the map is laid out along `factor`
    assert loo_knn_r2(xy, factor) > 0.95
    assert loo_knn_r2(xy, other) < 0.1
    assert np.isnan(loo_knn_r2(xy, np.ones(300)))  # a constant factor has no R²
