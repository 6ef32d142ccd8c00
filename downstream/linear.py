"""Linear-probe maths on frozen features: pure functions.

The fast protocol is multinomial logistic regression with an L2 penalty, solved to convergence with
L-BFGS, the strength chosen on a held-out split from a log-spaced sweep: Kornblith et al. 2019, "Do Better
ImageNet Models Transfer Better?", Sec. 3 / A.3 (L-BFGS, 45 values of λ log-spaced in [1e-6, 1e5]),
followed by Radford et al. 2021 (CLIP, Sec. 3.2 / A.3) and Ericsson et al. 2021, "How Well Do
Self-Supervised Models Transfer?", Sec. 3.1.

Objective (``n`` training rows, weights ``W`` C × D, bias ``b`` not penalised)::

    L(W, b) = (1/n) Σ_i CE(W x_i + b, y_i) + (λ/2) ||W||²

which is scikit-learn's ``LogisticRegression(C=1/(λ n))`` (``C Σ_i CE_i + ½||W||²``) divided by ``C n``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "l2_grid",
    "sklearn_C",
    "standardize",
    "duplicate_column_groups",
    "merge_columns",
    "merge_duplicate_columns",
    "fit_logistic_regression",
    "logistic_objective",
    "sweep_l2",
    "low_shot_indices",
    "fit_ridge",
    "r2_score",
]


def l2_grid(l2_min: float, l2_max: float, steps: int) -> list[float]:
    """``steps`` log-spaced L2 strengths from ``l2_max`` down to ``l2_min`` (strongest first, for warm starts)."""
    if not 0 < l2_min <= l2_max or steps < 1:
        raise ValueError(f"need 0 < l2_min <= l2_max and steps >= 1, got {l2_min}, {l2_max}, {steps}")
    return [float(v) for v in np.logspace(np.log10(l2_max), np.log10(l2_min), steps)]


def sklearn_C(l2: float, n: int) -> float:
    """scikit-learn's ``C`` giving the same minimiser as our ``λ`` on ``n`` rows: ``C = 1 / (λ n)``."""
    return 1.0 / (l2 * n)


def standardize(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, ...]:
    """Centre and scale every feature by the mean / std of ``train`` only (never of val or test)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp_min(eps)
    return tuple((t - mean) / std for t in (train, *others))


def duplicate_column_groups(train: torch.Tensor, *, tol: float = 1e-4) -> list[list[int]]:
    """Groups of columns of ``train`` that are equal after ``standardize``, constant columns left out.

    Two columns fall in one group when their standardised values differ by at most ``tol · max(1, |v|)`` on
    every row: a grayscale image fed as RGB, normalised with a different mean and std per channel, gives
    three such copies of every pixel, apart by float32 rounding (≈ 1e-7 of a value). Two distinct pixels
    differ somewhere by at least one grey level, i.e. by ``1 / (255 σ) ≥ 4e-3`` standardised units (σ ≤ 1 is
    the pixel's std as a fraction of white). Candidates are first grouped by their values on 16 sampled rows,
    rounded to 0.25, then checked on every row.
    """
    x = train.detach().to("cpu", torch.float64)
    std = x.std(0)
    cols = ((x - x.mean(0)) / std.clamp_min(1e-300)).t().contiguous()  # D × N, standardised
    del x
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(cols.shape[1], generator=gen)[:16]
    keys = torch.round(cols[:, rows] * 4).to(torch.int64).numpy()
    varies = (std > 0).tolist()
    groups: dict[bytes, list[list[int]]] = {}
    order: list[list[int]] = []
    for j in range(cols.shape[0]):
        if not varies[j]:
            continue
        candidates = groups.setdefault(keys[j].tobytes(), [])
        for g in candidates:
            first = cols[g[0]]
            if bool(((first - cols[j]).abs() <= tol * first.abs().clamp_min(1.0)).all()):
                g.append(j)
                break
        else:
            candidates.append([j])
            order.append(candidates[-1])
    return order


def merge_columns(x: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """``N × len(groups)``: each group's columns summed and divided by ``√k`` (``merge_duplicate_columns``)."""
    cols = torch.tensor([j for g in groups for j in g], device=x.device)
    target = torch.tensor([c for c, g in enumerate(groups) for _ in g], device=x.device)
    scale = torch.tensor([1.0 / math.sqrt(len(g)) for g in groups for _ in g], dtype=x.dtype, device=x.device)
    out = torch.zeros(len(groups), x.shape[0], dtype=x.dtype, device=x.device)
    return out.index_add_(0, target, x.t()[cols] * scale[:, None]).t().contiguous()


def merge_duplicate_columns(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same L2-regularised linear problem on fewer columns: exact, not an approximation.

    Columns that are equal on ``train`` after ``standardize`` (a grayscale image copied into three channels)
    get equal weights
    at the optimum, since the penalty is strictly convex and symmetric in them. A group of ``k`` such columns
    ``c`` with weights ``v`` adds ``k v c`` to the logits and ``k v²`` to the penalty, which is one column
    ``√k c`` with weight ``u = √k v`` and penalty ``u²``. On every split the group becomes
    ``(Σ_j x_j) / √k``, so ``W x`` is unchanged for any split. Columns constant on ``train`` are dropped:
    after ``standardize`` they are zero on train, so their weight is zero at the optimum. Pass standardised
    features. Returns the reduced ``train, *others`` (the input tensors themselves when nothing merges).
    """
    groups = duplicate_column_groups(train)
    if len(groups) == train.shape[1]:
        return (train, *others)
    return tuple(merge_columns(t, groups) for t in (train, *others))


def logistic_objective(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, l2: float) -> torch.Tensor:
    """``(1/n) Σ CE(W x_i + b, y_i) + (λ/2)||W||²`` (the module docstring's objective)."""
    return F.cross_entropy(x @ W.t() + b, y) + 0.5 * l2 * (W * W).sum()


def fit_logistic_regression(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-4,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    info: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the L2-regularised multinomial logistic loss with full-batch L-BFGS (strong Wolfe).

    ``x`` N × D, ``y`` N integer labels; returns ``(W C × D, b C)`` in ``x``'s dtype and device. ``init``
    warm-starts from a previous solution (the sweep goes from strong to weak regularisation); without it
    ``W = 0`` and ``b`` = the class log-priors, the exact optimum as ``λ → ∞``.

    Solved in float64 whatever ``x``'s dtype, and run until the largest gradient entry is ``≤ tol``
    (scikit-learn's ``gtol`` on the same objective) or ``max_iter`` iterations: torch's L-BFGS also stops when
    the loss or step stops changing, which in float32 happened after 2 iterations at strong λ with the
    bias still far from its optimum, so a stop without convergence restarts it (fresh curvature history).
    ``info`` (optional) receives ``iterations``, ``grad_max`` and ``converged`` (1.0 / 0.0).
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be N × D and y N; got {tuple(x.shape)} and {tuple(y.shape)}")
    if l2 < 0:
        raise ValueError(f"l2 must be ≥ 0, got {l2}")
    out_dtype = x.dtype
    x = x.detach().to(torch.float64)
    y = y.to(x.device).long()
    n = x.shape[0]
    onehot = F.one_hot(y, num_classes).to(x.dtype)  # N × C
    if init is None:
        W = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
        # a class absent from these rows gets half a row's prior (its optimum is at -inf)
        b = torch.log(onehot.sum(0).clamp_min(0.5) / n)
    else:
        W, b = (t.detach().clone().to(device=x.device, dtype=x.dtype) for t in init)
    W.requires_grad_(True)
    b.requires_grad_(True)

    def closure() -> torch.Tensor:
        # closed-form gradient (fewer kernel launches than autograd; this runs hundreds of times):
        # dL/dW = (softmax - onehot)^T x / n + λ W,  dL/db = mean(softmax - onehot)
        with torch.no_grad():
            logits = torch.addmm(b, x, W.t())
            logp = torch.log_softmax(logits, dim=1)
            loss = -(logp * onehot).sum() / n + 0.5 * l2 * (W * W).sum()
            delta = (logp.exp_() - onehot) / n
            W.grad = torch.addmm(W, delta.t(), x, beta=l2)
            b.grad = delta.sum(0)
        return loss

    def grad_max() -> float:
        closure()
        return max(float(W.grad.abs().max()), float(b.grad.abs().max()))

    iterations, g = 0, math.inf
    with _threads_for(x.device, x.shape[0] * x.shape[1] * num_classes):
        for _ in range(_MAX_RESTARTS):
            g = grad_max()
            if g <= tol or iterations >= max_iter:
                break
            opt = torch.optim.LBFGS(
                [W, b],
                lr=1.0,
                max_iter=max_iter - iterations,
                max_eval=2 * (max_iter - iterations),
                history_size=20,
                tolerance_grad=tol,
                tolerance_change=1e-15,
                line_search_fn="strong_wolfe",
            )
            opt.step(closure)
            done = int(opt.state[opt._params[0]].get("n_iter", 0))
            iterations += done
            if done == 0:
                break
        else:
            g = grad_max()
    if info is not None:
        info.update(iterations=float(iterations), grad_max=g, converged=float(g <= tol))
    return W.detach().to(out_dtype), b.detach().to(out_dtype)


# restarts of L-BFGS after a stop on "no change" with the gradient still above tol (each with fresh history)
_MAX_RESTARTS = 10


@contextlib.contextmanager
def _threads_for(device: torch.device, flops: int) -> Iterator[None]:
    """Run small CPU problems on one thread: each L-BFGS evaluation is a handful of tiny kernels, and
    OpenMP fork/join dominates them (measured on a shared 2-core box: 22 ms per evaluation with 2 threads,
    1 ms with 1). Large problems keep every thread. The previous setting is restored."""
    before = torch.get_num_threads()
    small = device.type == "cpu" and flops < 50_000_000
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


# val top-1 the best λ must gain over the strongest λ's (chance level) before patience counts drops
PATIENCE_MIN_GAIN = 0.01


def sweep_l2(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    num_classes: int,
    l2_values: Sequence[float],
    *,
    max_iter: int = 1000,
    tol: float = 1e-4,
    infos: list[dict[str, float]] | None = None,
    patience: int | None = None,
) -> tuple[int, list[float], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Fit one model per ``λ`` (warm-started in the given order) and score each on the val split.

    Returns ``(best index, val top-1 per λ, models)``; the best is the highest val top-1, ties going to the
    stronger regularisation (earlier in a strong-to-weak grid). ``infos`` (optional) receives each fit's
    ``info`` (iterations, final max |gradient|, converged).

    ``patience``: stop the sweep once the last ``patience`` consecutive ``λ`` all score below the best so far
    on val (the returned lists then end there). Ties do not count: the strong-``λ`` end of the grid often
    scores chance several times in a row, a little above or below it, before the val top-1 starts to rise,
    so drops count only once the best is ``PATIENCE_MIN_GAIN`` (1 point) above the first (strongest) λ's.
    The weak-``λ`` end of the grid is where fits are expensive (on 3,072 raw pixels, minutes each) and, past
    the val optimum, they are not chosen; the selection equals the full sweep's whenever val top-1 does not
    rise again after ``patience`` drops. ``None``: the whole grid.
    """
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be ≥ 1 or None, got {patience}")
    accs: list[float] = []
    models, init = [], None
    y_val = y_val.to(x_val.device).long()
    for l2 in l2_values:
        if (
            patience is not None
            and len(accs) > patience
            and max(accs) > accs[0] + PATIENCE_MIN_GAIN  # risen above the strong-λ (chance-level) score
            and max(accs[-patience:]) < max(accs)
        ):
            break  # the last `patience` λ all scored below the best (ties do not count)
        info: dict[str, float] = {}
        W, b = fit_logistic_regression(
            x_train, y_train, num_classes, l2, max_iter=max_iter, tol=tol, init=init, info=info
        )
        if infos is not None:
            infos.append(info)
        init = (W, b)
        pred = (x_val @ W.t() + b).argmax(1)
        accs.append(float((pred == y_val).double().mean()))
        models.append((W, b))
    best = int(np.argmax(accs))  # first maximum
    return best, accs, models


def low_shot_indices(
    labels: np.ndarray, *, fraction: float | None = None, per_class: int | None = None, seed: int = 0
) -> np.ndarray:
    """A stratified subset of the training rows: ``fraction`` of each class (at least one) or ``per_class``.

    Exactly one of ``fraction`` / ``per_class`` must be given; draws are reproducible from ``seed``.
    Returns sorted row indices.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError("give exactly one of fraction / per_class")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be ≥ 1, got {per_class}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx)))) if fraction is not None else min(per_class, len(idx))
        picked.append(rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(picked))


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression ``min (1/n)||X W + b − Y||² + λ||W||²`` in closed form (bias not penalised).

    ``x``: ``n × D``; ``y``: ``n × T`` targets. Returns ``(W D × T, b T)``.
    """
    x, y = x.double(), y.double()
    xm, ym = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
    xc, yc = x - xm, y - ym
    n, d = xc.shape
    gram = xc.T @ xc / n + l2 * torch.eye(d, dtype=xc.dtype, device=xc.device)
    w = torch.linalg.solve(gram, xc.T @ yc / n)
    return w, (ym - xm @ w).squeeze(0)


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot``, averaged over the columns of ``y`` (``n × T``).

    1 for a perfect fit, 0 for predicting the mean, negative when worse than the mean.
    """
    pred, y = pred.double(), y.double()
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0, keepdim=True)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())
