"""Geometry maths on constructed inputs with known answers, and against the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from downstream.analysis.metrics import alignment, effective_rank, mean_cosine, std_normalized, uniformity


def _identity_covariance(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``n × d`` features whose sample covariance is exactly the identity."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(z - z.mean(0))  # orthonormal, zero-mean columns
    return q * math.sqrt(n - 1)


def test_effective_rank_identity_covariance_is_d() -> None:
    z = _identity_covariance(200, 16)
    assert torch.allclose(torch.cov(z.t()), torch.eye(16, dtype=torch.float64), atol=1e-10)
    assert effective_rank(z) == pytest.approx(16.0, abs=1e-6)


def test_effective_rank_rank_one_is_one() -> None:
    g = torch.Generator().manual_seed(1)
    a, v = torch.randn(100, 1, generator=g), torch.randn(1, 32, generator=g)
    assert effective_rank(a * v + 3.0) == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_of_constant_features_is_zero() -> None:
    assert effective_rank(torch.ones(50, 8) * 2.5) == 0.0


def test_effective_rank_entropy_formula() -> None:
    # covariance eigenvalues (4, 1, 1) → singular values ∝ (2, 1, 1) → p = (1/2, 1/4, 1/4)
    z = _identity_covariance(300, 3) * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    expected = float(torch.exp(-(p * p.log()).sum()))  # = 2^{1.5} ≈ 2.83
    assert effective_rank(z) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(2**1.5)


def test_std_normalized_collapse_and_known_values() -> None:
    # every row points the same way (different norms): collapsed → 0
    z = torch.rand(64, 1) * torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    assert std_normalized(z + 0) == pytest.approx(0.0, abs=1e-7)
    # rows e1 and -e1 in 2-d: std of dim 1 (unbiased) is sqrt(2), dim 2 is 0 → mean sqrt(2)/2
    assert std_normalized(torch.tensor([[3.0, 0.0], [-1.0, 0.0]])) == pytest.approx(math.sqrt(2) / 2)
    # isotropic Gaussian: ≈ 1/sqrt(D) (SimSiam Sec. 4.1)
    g = torch.Generator().manual_seed(2)
    assert std_normalized(torch.randn(20000, 64, generator=g)) == pytest.approx(1 / 8, rel=0.02)


def test_alignment_formula() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g)
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    expected = sum(float((xn[i] - yn[i]).norm() ** 2) for i in range(10)) / 10
    assert alignment(x, y) == pytest.approx(expected, rel=1e-6)
    assert alignment(x, 2 * x) == pytest.approx(0.0, abs=1e-12)
    assert alignment(x, -x, alpha=2) == pytest.approx(4.0)
    assert alignment(x, -x, alpha=1) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        alignment(x, y[:5])


def test_uniformity_formula() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 6, generator=g)
    xn = F.normalize(x, dim=1).double()
    terms = [math.exp(-2 * float((xn[i] - xn[j]).norm() ** 2)) for i in range(12) for j in range(i + 1, 12)]
    assert uniformity(x) == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-6)
    assert uniformity(torch.ones(7, 3)) == pytest.approx(0.0, abs=1e-12)  # one point
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)  # antipodes: exp(-2·4)


def test_mean_cosine() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[5.0, 0.0], [0.0, -1.0]])
    assert mean_cosine(a, b) == pytest.approx(0.0)
    assert mean_cosine(a, a) == pytest.approx(1.0)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="N × D"):
        effective_rank(torch.ones(5))
    with pytest.raises(ValueError, match="N × D"):
        std_normalized(torch.ones(1, 4))
