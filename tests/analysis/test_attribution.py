"""Occlusion against a known mask: networks whose answer is known by construction."""

from __future__ import annotations

import math

import pytest
import torch

from downstream.analysis.attribution import (
    in_mask_share,
    patch_coverage,
    patch_masks,
    patch_occlusion,
    pointing_chance,
    pointing_hits,
)
from zoo.datasets.shapes import render_shape_mask

SIZE, PATCH = 16, 4


def _square_mask(n: int) -> torch.Tensor:
    """Rows 4-11, columns 4-7: two patches by one, aligned to the 4-px grid (area share 1/8)."""
    m = torch.zeros(n, SIZE, SIZE)
    m[:, 4:12, 4:8] = 1.0
    return m


def _images(n: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) + 0.5  # no pixel at 0


def test_patch_masks_tile_the_image() -> None:
    m = patch_masks(SIZE, PATCH)
    assert m.shape == (16, SIZE, SIZE)
    assert torch.equal(m.sum(0), torch.ones(SIZE, SIZE))
    with pytest.raises(ValueError, match="divide"):
        patch_masks(SIZE, 5)


def test_a_network_that_only_sees_the_mask_scores_one_in_mask() -> None:
    mask = _square_mask(3)
    x = _images(3)

    def per_image(i: int) -> torch.Tensor:  # the network sees the pixels under image i's mask, nothing else
        return patch_occlusion(lambda z: (z * mask[i]).flatten(1), x[i : i + 1], PATCH)

    sens = torch.cat([per_image(i) for i in range(3)])
    cov = patch_coverage(mask, PATCH)
    assert torch.allclose(in_mask_share(sens, cov), torch.ones(3))
    assert torch.equal(pointing_hits(sens, cov), torch.ones(3))
    # chance: the mask's share of the image and of the patches
    assert torch.allclose(cov.flatten(1).mean(1), torch.full((3,), 1 / 8))
    assert torch.allclose(pointing_chance(cov), torch.full((3,), 2 / 16))


def test_a_network_that_only_sees_the_background_scores_zero() -> None:
    mask = _square_mask(2)
    x = _images(2)
    sens = torch.cat(
        [patch_occlusion(lambda z, i=i: (z * (1 - mask[i])).flatten(1), x[i : i + 1], PATCH) for i in range(2)]
    )
    cov = patch_coverage(mask, PATCH)
    assert torch.allclose(in_mask_share(sens, cov), torch.zeros(2))
    assert torch.equal(pointing_hits(sens, cov), torch.zeros(2))


def test_a_network_that_weighs_every_patch_alike_scores_chance() -> None:
    # embedding = one-hot-like: each patch's mean in its own coordinate of a constant image; every patch
    # removal drops the cosine by the same amount, so the share is the mask's area share
    x = torch.ones(1, 3, SIZE, SIZE)

    def patch_means(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(z[:, :1], PATCH).flatten(1)

    sens = patch_occlusion(patch_means, x, PATCH)
    assert torch.allclose(sens, torch.full_like(sens, 1 - math.sqrt(15 / 16)), atol=1e-6)
    mask = _square_mask(1)
    cov = patch_coverage(mask, PATCH)
    assert in_mask_share(sens, cov).item() == pytest.approx(1 / 8)
    # all patches tie: a hit only if every tied patch overlaps the shape, which they do not
    assert pointing_hits(sens, cov).item() == 0.0


def test_a_blind_network_gives_nan_not_a_number_that_looks_like_a_result() -> None:
    def blind(z: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(z), 4) + 0 * z.sum()

    sens = patch_occlusion(blind, _images(2), PATCH)
    cov = patch_coverage(_square_mask(2), PATCH)
    assert torch.count_nonzero(sens) == 0
    assert torch.isnan(in_mask_share(sens, cov)).all()
    assert torch.isnan(pointing_hits(sens, cov)).all()


def test_batched_occlusion_equals_one_image_at_a_time() -> None:
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
    torch.manual_seed(0)
    x = torch.randn(5, 3, SIZE, SIZE)

    def emb(z: torch.Tensor) -> torch.Tensor:
        return conv(z).flatten(1)

    together = patch_occlusion(emb, x, PATCH, batch_size=40)  # 2 images per chunk, the last one alone
    alone = torch.cat([patch_occlusion(emb, x[i : i + 1], PATCH) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_the_real_shape_mask_of_a_circle_covers_its_area() -> None:
    m = torch.from_numpy(render_shape_mask("circle", 16.0, 16.0, 8.0, 0.0, 32))[None]
    cov = patch_coverage(m, 4)
    # π r² of the image, up to PIL filling the outline pixels at 4× (≈ +3 % at r = 8 px)
    assert cov.mean().item() == pytest.approx(math.pi * 64 / 1024, rel=0.05)
    assert cov[0, 0, 0].item() == 0.0 and cov[0, 3, 3].item() == pytest.approx(1.0)
