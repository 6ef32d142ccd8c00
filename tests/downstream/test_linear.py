"""The L-BFGS logistic-regression probe agrees with scikit-learn; sweep and low-shot helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from downstream.linear import (
    fit_logistic_regression,
    l2_grid,
    logistic_objective,
    low_shot_indices,
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
