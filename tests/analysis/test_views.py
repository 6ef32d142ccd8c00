"""The deterministic augmentation views: reproducible, in range, known answers where there is one."""

from __future__ import annotations

import pytest
import torch

from downstream.analysis.views import FAMILIES, blur, byol_view, colour, crop, grayscale, solarize


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", [*FAMILIES, "byol_view"])
def test_same_seed_same_view_in_range(name: str) -> None:
    fn = byol_view if name == "byol_view" else FAMILIES[name]
    x = _images()
    a = fn(x, torch.Generator().manual_seed(7))
    b = fn(x, torch.Generator().manual_seed(7))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6


def test_known_answers() -> None:
    x = _images()
    gen = torch.Generator().manual_seed(0)
    g = grayscale(x)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    assert torch.allclose(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    s = solarize(torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1))
    assert torch.allclose(s.flatten(), torch.tensor([0.1, 0.5, 0.1]))
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(crop(flat, gen), flat)  # any crop of a flat image is flat
    assert torch.allclose(blur(flat, gen), flat, atol=1e-6)  # a normalised kernel keeps flat images flat
    assert torch.allclose(colour(x, gen, 0.0, 0.0, 0.0), x)  # factors of exactly 1: identity
    assert not torch.allclose(crop(x, gen), x)  # a real change otherwise
