"""Geometry of an embedding space: pure functions on ``N × D`` feature matrices.

- Effective rank: Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality"
  (EUSIPCO), Def. 1 — ``erank = exp(H(p))`` with ``p_k = σ_k / Σ σ`` the normalised singular values. Applied
  to the centred feature matrix, i.e. ``σ_k = sqrt(λ_k)`` with ``λ_k`` the eigenvalues of the feature
  covariance (the same choice as RankMe, Garrido et al. 2023, Eq. 1, up to centring).
- Std of l2-normalised features: Chen & He 2021, "Exploring Simple Siamese Representation Learning",
  Sec. 4.1 / Fig. 2 — the mean over dimensions of the per-dimension std of ``z / ||z||``; ``0`` for a
  collapsed embedding, ``≈ 1/sqrt(D)`` for a well-spread (isotropic Gaussian) one.
- Alignment and uniformity: Wang & Isola 2020, "Understanding Contrastive Representation Learning through
  Alignment and Uniformity on the Hypersphere", Eq. 4 / 5 (``alpha = 2``, ``t = 2``) on normalised features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "effective_rank",
    "std_normalized",
    "alignment",
    "uniformity",
    "mean_cosine",
]


def _check_2d(z: torch.Tensor, min_rows: int = 2) -> torch.Tensor:
    if z.ndim != 2 or z.shape[0] < min_rows:
        raise ValueError(f"features must be N × D with N ≥ {min_rows}, got shape {tuple(z.shape)}")
    return z.double()


def effective_rank(z: torch.Tensor, eps: float = 1e-12) -> float:
    """Effective rank (Roy & Vetterli 2007, Def. 1) of the covariance of ``z`` (N × D).

    With ``σ_k = sqrt(λ_k)``, ``λ_k`` the eigenvalues of the covariance (the singular values of the centred
    features up to a constant), ``p_k = σ_k / Σ σ`` and ``erank = exp(-Σ p_k log p_k)``: ``D`` for an isotropic
    covariance, ``1`` for rank-1 features, and ``0`` by convention when every feature is constant (fully
    collapsed, zero covariance). Between 1 and ``min(N - 1, D)`` otherwise.
    """
    z = _check_2d(z)
    zc = z - z.mean(0, keepdim=True)
    cov = zc.t() @ zc / (len(z) - 1)  # D × D
    lam = torch.linalg.eigvalsh(cov).clamp_min(0)
    lam[lam < lam.max() * 1e-12] = 0  # float64 round-off of zero eigenvalues
    sigma = lam.sqrt()
    total = float(sigma.sum())
    if total <= eps:
        return 0.0
    p = sigma / total
    p = p[p > eps / max(len(p), 1)]
    return float(torch.exp(-(p * p.log()).sum()))


def std_normalized(z: torch.Tensor) -> float:
    """Mean per-dimension std of the l2-normalised rows of ``z`` (SimSiam, Chen & He 2021, Sec. 4.1).

    ``0`` when every row points the same way (collapse); ``≈ 1/sqrt(D)`` for isotropic features.
    """
    z = _check_2d(z)
    return float(F.normalize(z, dim=1).std(0, unbiased=True).mean())


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """``E ||f(x) - f(y)||^alpha`` over positive pairs (rows of ``x`` and ``y``), l2-normalised (Wang & Isola
    2020, Eq. 4). ``0`` for perfectly aligned pairs, at most ``2^alpha``; lower is better."""
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = F.normalize(_check_2d(x, 1), dim=1), F.normalize(_check_2d(y, 1), dim=1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||²)`` over distinct pairs, l2-normalised (Wang & Isola 2020,
    Eq. 5). ``0`` when every row is the same point (collapse); more negative is more uniform."""
    x = F.normalize(_check_2d(x), dim=1)
    sq = torch.pdist(x, p=2).pow(2)  # N(N-1)/2
    # log-mean-exp, stable
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(len(sq)))


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows of ``a`` and ``b`` (N × D each)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float(F.cosine_similarity(a.double(), b.double(), dim=1).mean())
