"""Small deterministic image transforms for augmented views, on float ``B × 3 × H × W`` images in ``[0, 1]``.

One function per transform family of BYOL's augmentation (Grill et al. 2020, Sec. 3.3 / Table 6): random
resized crop, colour jitter, Gaussian blur, solarisation and grayscale. Per-image parameters come from a
``torch.Generator``, so the same seed gives the same views. ``byol_view`` composes them with the paper's
probabilities (view 1 of Table 6) for alignment / uniformity. Written here so that ``downstream`` does not
import ``pretrain``; no gradient, any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "crop",
    "colour",
    "blur",
    "solarize",
    "grayscale",
    "byol_view",
    "FAMILIES",
]

# ITU-R BT.601 luma weights (what PIL / torchvision use for grayscale)
_LUMA = (0.299, 0.587, 0.114)


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def crop(
    x: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (0.75, 4 / 3),
) -> torch.Tensor:
    """Random resized crop: a box of ``scale`` × area and aspect ``ratio`` (log-uniform), resized back to H × W."""
    b, _, h, w = x.shape
    area = _uniform(gen, b, *scale) * h * w
    log_r = _uniform(gen, b, math.log(ratio[0]), math.log(ratio[1]))
    aspect = log_r.exp()
    cw = (area * aspect).sqrt().round().clamp(1, w).long()
    ch = (area / aspect).sqrt().round().clamp(1, h).long()
    u, v = torch.rand(b, generator=gen), torch.rand(b, generator=gen)
    out = torch.empty_like(x)
    for i in range(b):
        top = int(v[i] * (h - ch[i] + 1))
        left = int(u[i] * (w - cw[i] + 1))
        patch = x[i : i + 1, :, top : top + int(ch[i]), left : left + int(cw[i])]
        out[i] = F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


def grayscale(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Luma (BT.601) copied to the three channels."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()


def colour(
    x: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
) -> torch.Tensor:
    """Colour jitter (BYOL Table 6 strengths, hue left out): brightness, contrast and saturation factors drawn
    uniformly in ``[1 - s, 1 + s]`` per image, applied in that order, clipped to ``[0, 1]``."""
    b = x.shape[0]

    def f(s: float) -> torch.Tensor:
        return _uniform(gen, b, 1 - s, 1 + s).to(x).view(b, 1, 1, 1)

    fb, fc, fs = f(brightness), f(contrast), f(saturation)
    y = (x * fb).clamp(0, 1)
    mean = grayscale(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * fc + mean).clamp(0, 1)
    g = grayscale(y)
    return ((y - g) * fs + g).clamp(0, 1)


def blur(
    x: torch.Tensor, gen: torch.Generator, sigma: tuple[float, float] = (0.1, 2.0), kernel_frac: float = 0.1
) -> torch.Tensor:
    """Gaussian blur, ``σ`` uniform in ``sigma`` per image, kernel ≈ 10 % of the side (BYOL Table 6), the
    σ range scaled from the paper's 224 px to this image size; reflect padding."""
    b, c, h, w = x.shape
    k = max(3, int(round(kernel_frac * h)) | 1)
    sig = _uniform(gen, b, *sigma) * (h / 224.0)
    out = torch.empty_like(x)
    r = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
    for i in range(b):
        g = torch.exp(-(r**2) / (2 * float(sig[i]) ** 2))
        g = g / g.sum()
        xi = F.pad(x[i : i + 1], (k // 2, k // 2, k // 2, k // 2), mode="reflect")
        xi = F.conv2d(xi, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        xi = F.conv2d(xi, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
        out[i] = xi[0]
    return out


def solarize(x: torch.Tensor, gen: torch.Generator | None = None, threshold: float = 0.5) -> torch.Tensor:
    """Pixels at or above ``threshold`` are inverted (``1 - x``), as in PIL's ``ImageOps.solarize``."""
    return torch.where(x >= threshold, 1.0 - x, x)


def _flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    m = (torch.rand(x.shape[0], generator=gen) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(m, x.flip(3), x)


Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# one family at a time, for the invariance evaluator (keys become metric names ``cos_<family>``)
FAMILIES: dict[str, Transform] = {
    "crop": crop,
    "colour": colour,
    "blur": blur,
    "solarize": solarize,
    "grayscale": grayscale,
}


def byol_view(
    x: torch.Tensor,
    gen: torch.Generator,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.5,
    solarize_p: float = 0.1,
) -> torch.Tensor:
    """One BYOL-style augmented view: crop, flip, colour jitter (p 0.8), grayscale (p 0.2), blur, solarize.

    Probabilities default to the average of the paper's two views (Table 6: blur 1.0 / 0.1, solarize 0 / 0.2).
    """
    b = x.shape[0]

    def apply(y: torch.Tensor, fn: Transform, p: float) -> torch.Tensor:
        m = (torch.rand(b, generator=gen) < p).to(y.device).view(-1, 1, 1, 1)
        return torch.where(m, fn(y, gen), y)

    y = _flip(crop(x, gen), gen)
    y = apply(y, colour, jitter_p)
    y = apply(y, grayscale, gray_p)
    y = apply(y, blur, blur_p)
    return apply(y, solarize, solarize_p)
