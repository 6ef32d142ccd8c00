"""Occlusion on toy models whose answer is known."""

from __future__ import annotations

import torch

from downstream.analysis.occlusion import occlusion_map


def test_model_looking_at_one_quadrant_lights_up_that_quadrant_only() -> None:
    def top_left(x: torch.Tensor) -> torch.Tensor:  # sees only the top-left 8×8 quadrant
        return x[:, :, :8, :8].reshape(len(x), -1)

    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps = occlusion_map(top_left, x, window=4, stride=4)
    assert maps.shape == (3, 16, 16)
    assert (maps[:, :8, :8] > 0).all()  # every patch of the quadrant moves the embedding
    assert torch.count_nonzero(maps[:, 8:, :]) == 0 and torch.count_nonzero(maps[:, :, 8:]) == 0


def test_occlusion_value_is_the_cosine_drop() -> None:
    # embedding = the mean of each 8×8 quadrant of channel 0 (4-d); occluding a quadrant zeroes its entry
    def quads(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x[:, :1], 8).reshape(len(x), -1)

    x = torch.ones(1, 3, 16, 16)
    maps = occlusion_map(quads, x, window=8, stride=8)
    # cos((1,1,1,1), (0,1,1,1)) = 3 / (2·sqrt 3) → drop 1 - sqrt(3)/2 everywhere
    assert torch.allclose(maps, torch.full_like(maps, 1 - 3**0.5 / 2), atol=1e-6)


def test_input_blind_model_has_a_flat_zero_map() -> None:
    def blind(x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), 5) + 0 * x.sum()

    assert torch.count_nonzero(occlusion_map(blind, torch.randn(2, 3, 8, 8), window=2, stride=2)) == 0
