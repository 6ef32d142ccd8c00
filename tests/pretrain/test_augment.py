import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pretrain.augment import (
    _adjust,
    augment_view,
    gaussian_blur,
    random_resized_crop_flip,
    rgb_to_gray,
    swap_background,
)
from pretrain.config import View2Augment, ViewAugment

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _images(n=8, size=16):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_views_are_deterministic_given_the_generator():
    imgs = _images()
    a = augment_view(imgs, View2Augment(), 16, MEAN, STD, torch.Generator().manual_seed(5))
    b = augment_view(imgs, View2Augment(), 16, MEAN, STD, torch.Generator().manual_seed(5))
    c = augment_view(imgs, View2Augment(), 16, MEAN, STD, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_identity_view_only_normalises():
    imgs = _images()
    view = ViewAugment(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0
    )
    out = augment_view(imgs, view, 16, MEAN, STD, torch.Generator().manual_seed(0))
    expected = (imgs.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_flip_and_resize():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 3, 1, 1) / 16
    flipped = random_resized_crop_flip(x, 4, (1.0, 1.0), (1.0, 1.0), 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, x.flip(3))
    small = random_resized_crop_flip(x, 2, (1.0, 1.0), (1.0, 1.0), 0.0, torch.Generator().manual_seed(0))
    assert small.shape == (1, 3, 2, 2)


def test_grayscale_and_solarize_with_probability_one():
    imgs = _images()
    gray = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0, grayscale_p=1.0, blur_p=0.0)
    out = augment_view(imgs, gray, 16, (0.0,) * 3, (1.0,) * 3, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    sol = ViewAugment(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
        solarize_p=1.0,
    )  # fmt: skip
    out = augment_view(imgs, sol, 16, (0.0,) * 3, (1.0,) * 3, torch.Generator().manual_seed(0))
    x = imgs.float() / 255
    torch.testing.assert_close(out, torch.where(x >= 0.5, 1 - x, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("op", "factor", "ref"), [
    (0, 1.3, TF.adjust_brightness), (1, 0.6, TF.adjust_contrast), (2, 1.4, TF.adjust_saturation),
    (3, 0.08, TF.adjust_hue), (3, -0.1, TF.adjust_hue),
])  # fmt: skip
def test_colour_jitter_ops_match_torchvision(op, factor, ref):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = _adjust(x, op, torch.full((3,), factor))
    torch.testing.assert_close(ours, ref(x, factor), atol=1e-4, rtol=0)


def test_blur_preserves_constants_and_smooths():
    x = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(x, torch.tensor([0.5, 2.0]), 3), x)
    noise = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noise, torch.tensor([1.0, 1.0]), 3)
    assert blurred.std() < noise.std()
    assert rgb_to_gray(noise).shape == (2, 1, 8, 8)


def test_swap_background_recomposes_digits_m_and_respects_p():
    gen = torch.Generator().manual_seed(0)
    glyphs = torch.zeros(6, 8, 8, dtype=torch.uint8)
    glyphs[:, 2:6, 3:5] = 255
    bank = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=gen)
    images = torch.full((6, 3, 8, 8), 7, dtype=torch.uint8)
    out = swap_background(images, glyphs, bank, 1.0, torch.Generator().manual_seed(1))
    for img, g in zip(out, glyphs, strict=True):
        # every output is |photo - glyph| for one photo of the bank
        matches = [bool((img == (b.int() - g.int()).abs().to(torch.uint8)).all()) for b in bank]
        assert any(matches)
    assert torch.equal(swap_background(images, glyphs, bank, 0.0, torch.Generator().manual_seed(1)), images)
    again = swap_background(images, glyphs, bank, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # same generator state, same backgrounds
    half = swap_background(images, glyphs, bank, 0.5, torch.Generator().manual_seed(2))
    kept = (half == images).flatten(1).all(1)
    assert 0 < int(kept.sum()) < 6
