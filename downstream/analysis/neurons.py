"""Feature importance of single channels of a pooled representation, and what the important ones track.

All functions take **standardised** features (``downstream.linear.standardize``: each channel centred and
scaled by the training split), so "zeroing" a channel sets it to its training mean (mean ablation), and a
fixed linear probe ``(W K × D, b K)`` fitted on them.

- **Importance of channel j**: the probe's accuracy drop when channel ``j`` alone is set to its mean
  (ablation / "knock-out" importance, as in Morcos et al. 2018, "On the importance of single directions for
  generalization", ICLR, here for a linear read-out).
- **Channels for a fraction of the accuracy**: the smallest ``k`` whose accuracy with the ``k`` most
  important channels (``kept_accuracy_curve``: the others at their mean, the probe kept; or probes refitted
  on them, computed by the caller) reaches the fraction of the full probe's accuracy above chance.
  Small = the class information is concentrated.
- **What a channel tracks**: ``|Pearson r|`` of its values with each continuous factor, and the correlation
  ratio ``η`` (Pearson 1903; ``√(between-class variance / total variance)``, in [0, 1]) with a categorical one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "bisect_channels",
    "probe_accuracy",
    "channel_ablation_importance",
    "kept_accuracy_curve",
    "channels_for_fraction",
    "abs_correlation",
    "correlation_ratio",
]


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> float:
    """Top-1 accuracy of the linear probe ``x W^T + b`` on labels ``y``."""
    return float(((x @ W.t() + b).argmax(1) == y).float().mean())


def channel_ablation_importance(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``D``: accuracy(full) − accuracy(channel j set to 0 = its mean), for every channel ``j``."""
    logits = x @ W.t() + b  # N × K
    full = (logits.argmax(1) == y).float().mean()
    out = torch.empty(x.shape[1])
    for j in range(x.shape[1]):
        ablated = logits - x[:, j : j + 1] * W[:, j][None]  # remove channel j's contribution
        out[j] = full - (ablated.argmax(1) == y).float().mean()
    return out


def kept_accuracy_curve(
    x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, order: torch.Tensor
) -> np.ndarray:
    """``D``: the probe's accuracy when only the first ``k`` channels of ``order`` are kept, ``k = 1 … D``."""
    acc = np.empty(len(order))
    logits = torch.zeros(len(x), W.shape[0], dtype=x.dtype) + b
    for k, j in enumerate(order.tolist()):
        logits = logits + x[:, j : j + 1] * W[:, j][None]
        acc[k] = float((logits.argmax(1) == y).float().mean())
    return acc


def channels_for_fraction(
    curve: np.ndarray, full: float, chance: float, fraction: float = 0.5, *, ks: list[int] | None = None
) -> int:
    """Smallest ``k`` with ``curve[i] − chance ≥ fraction · (full − chance)``, where ``curve[i]`` is the accuracy
    with ``ks[i]`` channels (default ``ks = 1 … len(curve)``); the last ``k`` if none reaches it, and 0 when
    the full probe is not above chance (nothing to carry)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ks = list(range(1, len(curve) + 1)) if ks is None else list(ks)
    if len(ks) != len(curve):
        raise ValueError(f"{len(ks)} channel counts for {len(curve)} accuracies")
    if full <= chance:
        return 0
    reached = np.flatnonzero(np.asarray(curve) - chance >= fraction * (full - chance) - 1e-12)
    return int(ks[reached[0]]) if len(reached) else int(ks[-1])


def bisect_channels(accuracy_of: Callable[[int], float], lo: int, hi: int, target: float) -> int:
    """The smallest ``k`` in ``(lo, hi]`` with ``accuracy_of(k) ≥ target``, by bisection, given that ``hi``
    reaches it and ``lo`` does not (``channels_for_fraction`` on a coarse grid gives both). It assumes the
    accuracy grows with ``k`` between them (a refitted probe on more of the top channels), so it asks for
    about log2(hi − lo) values of ``accuracy_of``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accuracy_of(mid) >= target - 1e-12:
            hi = mid
        else:
            lo = mid
    return hi


def abs_correlation(x: torch.Tensor | np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``D``: ``|Pearson r|`` of each channel of ``x`` (``N × D``) with ``factor`` (``N``); 0 for a constant channel."""
    a = np.asarray(x, dtype=np.float64)
    f = np.asarray(factor, dtype=np.float64).reshape(-1)
    a = a - a.mean(0)
    f = f - f.mean()
    denom = np.sqrt((a * a).sum(0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (a * f[:, None]).sum(0) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.abs(r)


def correlation_ratio(x: torch.Tensor | np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``D``: ``η = √(Σ_c n_c (mean_c − mean)² / Σ (x − mean)²)`` of each channel with categorical ``labels``."""
    a = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels).reshape(-1)
    mu = a.mean(0)
    total = ((a - mu) ** 2).sum(0)
    between = np.zeros(a.shape[1])
    for c in np.unique(lab):
        rows = a[lab == c]
        between += len(rows) * (rows.mean(0) - mu) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sqrt(between / np.where(total > 0, total, 1.0)), 0.0)
