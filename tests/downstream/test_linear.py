"""The L-BFGS logistic-regression probe agrees with scikit-learn; sweep and low-shot helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from downstream.linear import (
    duplicate_column_groups,
    fit_logistic_regression,
    l2_grid,
    logistic_objective,
    low_shot_indices,
    merge_columns,
    merge_duplicate_columns,
    sklearn_C,
    standardize,
    sweep_l2,
)


def _blobs(n=240, d=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (c, d))
    y = rng.integers(0, c, n)
    x = centres[y] + rng.normal(0, 1.0, (n, d))
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_matches_sklearn_logistic_regression(l2):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    (x,) = standardize(x)
    W, b = fit_logistic_regression(x, y, 4, l2, max_iter=5000, tol=1e-10)
    sk = LogisticRegression(C=sklearn_C(l2, len(x)), tol=1e-10, max_iter=10000).fit(x.numpy(), y.numpy())
    W_sk = torch.from_numpy(sk.coef_)
    b_sk = torch.from_numpy(sk.intercept_)
    # the softmax is invariant to a common shift of the (unpenalised) biases: compare them centred
    assert torch.allclose(W, W_sk, atol=1e-4, rtol=1e-3)
    assert torch.allclose(b - b.mean(), b_sk - b_sk.mean(), atol=1e-4, rtol=1e-3)
    ours = torch.softmax(x @ W.t() + b, 1).numpy()
    assert np.allclose(ours, sk.predict_proba(x.numpy()), atol=1e-5)
    assert (ours.argmax(1) == sk.predict(x.numpy())).all()
    # and ours is (at least) as good a minimiser of the shared objective
    obj_sk = logistic_objective(x, y, W_sk, b_sk, l2)
    assert logistic_objective(x, y, W, b, l2) <= obj_sk + 1e-9


def test_fit_runs_under_no_grad_and_float32():
    x, y = _blobs(seed=1)
    with torch.no_grad():
        W, b = fit_logistic_regression(x.float(), y, 4, 1e-2)
    assert W.dtype == torch.float32 and not W.requires_grad
    assert float(((x.float() @ W.t() + b).argmax(1) == y).float().mean()) > 0.8


def test_sweep_selects_on_val_and_strong_l2_underfits():
    x, y = _blobs(n=400, seed=2)
    xt, xv = x[:300], x[300:]
    yt, yv = y[:300], y[300:]
    grid = l2_grid(1e-4, 1e3, 8)
    assert grid[0] == pytest.approx(1e3) and grid[-1] == pytest.approx(1e-4)
    best, accs, models = sweep_l2(xt, yt, xv, yv, 4, grid)
    assert len(accs) == len(models) == 8
    assert accs[best] == max(accs)
    assert best == accs.index(max(accs))  # first (strongest-regularised) maximum
    assert np.linalg.norm(models[0][0].numpy()) < np.linalg.norm(models[-1][0].numpy())


def test_sweep_patience_stops_after_drops_and_keeps_the_full_sweeps_choice():
    """Noisy high-dimensional rows overfit at weak λ: val top-1 falls past the optimum. With patience the
    sweep ends once ``patience`` λ in a row score below its best, fitting fewer λ, and chooses what the whole
    grid chooses. The strong-λ end scores chance several times in a row: those ties must not stop it."""
    gen = torch.Generator().manual_seed(5)
    n, d = 120, 200
    y = torch.arange(n) % 3
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * 3.0
    x[:, 0] += 2.0 * y  # one informative feature among 200 noise ones
    xt, xv, yt, yv = x[:60], x[60:], y[:60], y[60:]
    grid = l2_grid(1e-5, 1e4, 19)
    best_all, accs_all, _ = sweep_l2(xt, yt, xv, yv, 3, grid)
    assert accs_all[:3] == [accs_all[0]] * 3 and accs_all[0] < max(accs_all)  # a flat start, then a rise
    assert max(accs_all[best_all + 1 :]) <= accs_all[best_all] > accs_all[-1]  # and a fall past the best
    best, accs, models = sweep_l2(xt, yt, xv, yv, 3, grid, patience=2)
    assert len(accs) == len(models) < len(grid)
    assert accs == accs_all[: len(accs)]
    assert best == best_all and max(accs[-2:]) < accs[best]  # stopped after 2 λ below the best
    prev = accs[:-1]
    assert not (len(prev) > 2 and max(prev[-2:]) < max(prev))  # and not one λ earlier
    with pytest.raises(ValueError, match="patience"):
        sweep_l2(xt, yt, xv, yv, 3, grid, patience=0)


def test_sweep_patience_ignores_dips_in_the_chance_plateau(monkeypatch):
    """Raw pixels on shapes scored 0.1, 0.1, 0.1, 0.1, 0.0985, 0.0955, 0.101, … at strong λ before rising to
    0.1345: dips below the first score must not stop the sweep while the best has not risen above it."""
    import downstream.linear as lin

    n = 2000
    xv = torch.arange(n, dtype=torch.float64).view(n, 1)  # val row i has feature i and label 1
    yv = torch.ones(n, dtype=torch.long)
    curve = [0.1, 0.1, 0.0985, 0.0955, 0.099, 0.12, 0.13, 0.125, 0.12, 0.11, 0.10]
    fitted = []

    def fake_fit(x, y, num_classes, l2, **kw):  # a model right on the first acc·n val rows
        k = round(curve[len(fitted)] * n)
        fitted.append(l2)
        W = torch.zeros(num_classes, 1, dtype=torch.float64)
        b = torch.zeros(num_classes, dtype=torch.float64)
        W[1, 0], b[1] = -1.0, k - 0.5  # class 1 exactly where feature < k
        return W, b

    monkeypatch.setattr(lin, "fit_logistic_regression", fake_fit)
    grid = l2_grid(1e-5, 1e5, len(curve))
    best, accs, _ = sweep_l2(xv, yv, xv, yv, 2, grid, patience=2)
    assert accs == pytest.approx(curve[: len(accs)])
    assert accs[best] == pytest.approx(0.13) and len(accs) == 9  # stopped after 0.125, 0.12: not in the plateau


def test_low_shot_indices():
    y = np.repeat(np.arange(5), 40)
    idx = low_shot_indices(y, fraction=0.1, seed=3)
    assert np.bincount(y[idx]).tolist() == [4] * 5
    assert (np.diff(idx) > 0).all()
    one_pct = low_shot_indices(y, fraction=0.01, seed=3)
    assert np.bincount(y[one_pct]).tolist() == [1] * 5  # at least one per class
    per = low_shot_indices(y, per_class=7, seed=3)
    assert np.bincount(y[per]).tolist() == [7] * 5
    assert not np.array_equal(low_shot_indices(y, per_class=7, seed=4), per)
    assert np.array_equal(low_shot_indices(y, per_class=7, seed=3), per)
    with pytest.raises(ValueError):
        low_shot_indices(y, fraction=0.1, per_class=3)


def _random_relu_digits(dim=128, seed=0):
    """scikit-learn's digits through a fixed random ReLU layer (a stand-in for random-init features),
    split like ours (train 1078 / val 359), standardised with train statistics, in float32."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    x, y = x[perm], y[perm]
    feats = np.maximum(x @ rng.normal(0, 1 / 8, (64, dim)), 0)
    xt, xv = torch.tensor(feats[:1078], dtype=torch.float32), torch.tensor(feats[1078:1437], dtype=torch.float32)
    xt, xv = standardize(xt, xv)
    return xt, torch.from_numpy(y[:1078]), xv, torch.from_numpy(y[1078:1437])


def test_strong_l2_converges_in_float32_to_the_log_prior_bias():
    """Issue 13: at λ = 1e5 in float32, L-BFGS stopped after 2 iterations with the bias still 0."""
    xt, yt, _, _ = _random_relu_digits()
    info = {}
    W, b = fit_logistic_regression(xt, yt, 10, 1e5, info=info)
    assert W.dtype == torch.float32
    assert info["converged"] == 1.0 and info["grad_max"] <= 1e-4
    # as λ → ∞ the optimum is W → 0 and b = the class log-priors (up to a common shift)
    prior = torch.log(torch.bincount(yt, minlength=10).double() / len(yt))
    assert torch.allclose((b - b.mean()).double(), prior - prior.mean(), atol=1e-3)
    assert float(W.abs().max()) < 1e-3


def test_sweep_matches_sklearn_at_every_grid_point():
    """Val top-1 at each λ of the evaluator's grid (1e-6 … 1e5, 23 values) equals scikit-learn's at C = 1/(λn).

    Both solvers stop at max |gradient| ≤ 1e-6 on the same objective; at weak λ (near-separable data) the
    optimum is flat, so one val image of slack is allowed there; at λ ≥ 1 they must agree exactly.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression

    xt, yt, xv, yv = _random_relu_digits()
    grid = l2_grid(1e-6, 1e5, 23)
    infos = []
    _, accs, _ = sweep_l2(xt, yt, xv, yv, 10, grid, tol=1e-6, infos=infos)
    assert all(i["converged"] for i in infos)
    for l2, ours in zip(grid, accs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs ConvergenceWarning would only mean a looser reference
            sk = LogisticRegression(C=sklearn_C(l2, len(xt)), tol=1e-6, max_iter=20000)
            sk.fit(xt.double().numpy(), yt.numpy())
        theirs = float((sk.predict(xv.double().numpy()) == yv.numpy()).mean())
        slack = 0.0 if l2 >= 1 else 1.0 / len(yv) + 1e-12
        assert abs(ours - theirs) <= slack, f"λ={l2:.3g}: ours {ours:.4f}, scikit-learn {theirs:.4f}"


def test_merging_duplicate_columns_is_exact():
    """Grayscale-as-RGB features (every column three times) and a constant column: the merged problem has
    a third of the columns and the same optimum, i.e. the same logits on train and on unseen rows."""
    gen = torch.Generator().manual_seed(0)
    gray = torch.randn(300, 8, generator=gen, dtype=torch.float64)
    y = (gray[:, :3].sum(1) > 0).long() + (gray[:, 3] > 0.5).long()
    x = torch.cat([gray, gray, gray, torch.zeros(300, 1, dtype=torch.float64)], dim=1)  # 25 columns
    x_new = torch.randn(50, 8, generator=gen, dtype=torch.float64).repeat(1, 3)
    x_new = torch.cat([x_new, torch.full((50, 1), 7.0, dtype=torch.float64)], dim=1)
    m_tr, m_new = merge_duplicate_columns(x, x_new)
    assert m_tr.shape == (300, 8) and m_new.shape == (50, 8)
    for l2 in (1e-3, 1e-1):
        W, b = fit_logistic_regression(x, y, 3, l2, tol=1e-10)
        Wm, bm = fit_logistic_regression(m_tr, y, 3, l2, tol=1e-10)
        assert torch.allclose(x @ W.t() + b, m_tr @ Wm.t() + bm, atol=1e-6)
        assert torch.allclose(x_new @ W.t() + b, m_new @ Wm.t() + bm, atol=1e-6)
        # the same objective value: the √k scaling keeps the penalty equal
        assert abs(logistic_objective(x, y, W, b, l2) - logistic_objective(m_tr, y, Wm, bm, l2)) < 1e-7
    # columns that differ anywhere on train stay apart
    x2 = x.clone()
    x2[5, 8] += 1.0
    assert merge_duplicate_columns(x2)[0].shape[1] == 9
    distinct = torch.randn(40, 6, generator=gen)
    assert merge_duplicate_columns(distinct)[0] is distinct


def test_duplicates_are_found_through_a_per_channel_normalisation_and_rounding():
    """Grayscale as RGB normalised with ImageNet's per-channel mean and std: the three copies of a pixel are
    affine images of each other; after standardising they are one column (up to rounding)."""
    gen = torch.Generator().manual_seed(1)
    gray = torch.rand(997, 331, generator=gen)  # odd sizes, so columns land in different SIMD lanes
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = torch.cat([(gray - m) / s for m, s in zip(mean, std, strict=True)] + [torch.full((997, 2), 0.5)], dim=1)
    groups = duplicate_column_groups(x)
    assert len(groups) == 331 and all(len(g) == 3 for g in groups)
    (xs,) = standardize(x)
    merged = merge_columns(xs, groups)
    assert torch.allclose(merged, standardize(gray)[0] * 3**0.5, atol=1e-4)
    # a pixel that differs by one grey level (1/255) on one row is not merged
    y = x.clone()
    y[10, 0] += 1 / 255 / 0.229
    assert len(duplicate_column_groups(y)) == 332
