"""BYOL's two asymmetric views (paper Table 6), batched on tensors and driven by a ``torch.Generator``.

Images stay a uint8 ``N × 3 × H × W`` tensor in memory; each step draws every random parameter of every
image from one generator (on the CPU, whatever the device) and applies the whole batch at once:

1. random resized crop (scale, aspect ratio) + horizontal flip, one ``affine_grid``/``grid_sample`` call
   (bilinear, like torchvision's resize);
2. colour jitter (brightness, contrast, saturation, hue) in a random order per image, with probability p;
3. grayscale (ITU-R 601 luma, as torchvision) with probability p;
4. Gaussian blur with a per-image σ (separable, grouped convolution) with probability p;
5. solarize (``x → 1 − x`` above the threshold) with probability p;
6. normalisation with the dataset mean / std.

The same generator state gives the same views, which is what makes stop/resume exact.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from pretrain.config import ViewAugment

__all__ = [
    "swap_background",
    "augment_view",
    "single_thread",
    "random_resized_crop_flip",
    "color_jitter",
    "gaussian_blur",
    "rgb_to_gray",
]

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _bernoulli(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """``B × 3 × H × W`` in [0, 1] → ``B × 1 × H × W`` luma."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def random_resized_crop_flip(
    x: torch.Tensor,
    size: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    flip_p: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """Crop a random area fraction ``scale`` with aspect ``ratio`` from each image, resize to ``size``, flip.

    As torchvision's ``RandomResizedCrop`` the log-ratio is uniform; instead of rejection sampling an
    out-of-bounds box is shrunk to fit (so the area is at most the whole image).
    """
    n, _, h, w = x.shape
    area = _uniform(n, scale[0], scale[1], gen)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen)
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    ch = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * (1 - cw) + cw / 2) * 2 - 1  # crop centre in [-1, 1]
    cy = (torch.rand(n, generator=gen) * (1 - ch) + ch / 2) * 2 - 1
    flip = torch.where(_bernoulli(n, flip_p, gen), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cw * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _frac(x: torch.Tensor) -> torch.Tensor:
    return x - torch.floor(x)  # x mod 1 (much faster than ``%`` on CPU)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)  # elementwise: strided max(1) is slow on CPU
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    s = delta / maxc.clamp(min=1e-8)
    d = delta.clamp(min=1e-8)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, _frac(h / 6.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = (t.unsqueeze(1) for t in x.unbind(1))
    # f(n) = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6 with n = 5, 3, 1 for R, G, B
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    kk = 6.0 * _frac((n + h * 6.0) / 6.0)
    return v - v * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _adjust(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    """Apply jitter op 0..3 (brightness, contrast, saturation, hue) with per-image factor ``f``."""
    f4 = f.view(-1, 1, 1, 1)
    if op == 0:
        return (x * f4).clamp(0, 1)
    if op == 1:
        mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * f4 + mean).clamp(0, 1)
    if op == 2:
        gray = rgb_to_gray(x)
        return ((x - gray) * f4 + gray).clamp(0, 1)
    hsv = _rgb_to_hsv(x)
    hsv = torch.cat([_frac(hsv[:, :1] + f4), hsv[:, 1:]], 1)
    return _hsv_to_rgb(hsv).clamp(0, 1)


def color_jitter(
    x: torch.Tensor,
    p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """torchvision-style ``ColorJitter`` applied with probability ``p``, the four ops in a random order."""
    n = x.shape[0]
    apply = _bernoulli(n, p, gen)
    factors = torch.stack(
        [
            _uniform(n, max(0.0, 1 - brightness), 1 + brightness, gen),
            _uniform(n, max(0.0, 1 - contrast), 1 + contrast, gen),
            _uniform(n, max(0.0, 1 - saturation), 1 + saturation, gen),
            _uniform(n, -hue, hue, gen),
        ],
        1,
    )  # N x 4
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)  # N x 4, a random permutation per image
    strengths = (brightness, contrast, saturation, hue)
    out = x.clone()
    for slot in range(4):
        for op in range(4):
            if strengths[op] == 0:
                continue
            sel = torch.nonzero(apply & (order[:, slot] == op)).flatten()
            if sel.numel() == 0:
                continue
            f = factors[sel, op].to(device=x.device, dtype=x.dtype)
            sel = sel.to(x.device)
            out[sel] = _adjust(out[sel], op, f)
    return out


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own σ (``sigma``: N) using a separable ``kernel_size`` kernel, reflect pad."""
    n, c, h, w = x.shape
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.to(x).view(-1, 1) ** 2))
    k = k / k.sum(1, keepdim=True)  # N x K
    k = k.repeat_interleave(c, 0)  # (N*C) x K
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def swap_background(
    images: torch.Tensor, glyphs: torch.Tensor, backgrounds: torch.Tensor, p: float, gen: torch.Generator
) -> torch.Tensor:
    """Replace the photo background of each ``digits-m`` image with probability ``p`` (BG_Swap).

    ``images``: uint8 ``N × 3 × S × S``; ``glyphs``: their grey digits, uint8 ``N × S × S``; ``backgrounds``:
    a bank of photo crops, uint8 ``M × 3 × S × S``. A swapped image is ``|background − glyph|``, the
    ``digits-m`` recipe with a background drawn uniformly from the bank; the others are returned unchanged.
    Draws ``N`` probabilities and ``N`` bank indices from ``gen`` whatever ``p`` is.
    """
    n = images.shape[0]
    swap = _bernoulli(n, p, gen)
    j = torch.randint(backgrounds.shape[0], (n,), generator=gen)
    composed = (backgrounds[j].to(torch.int16) - glyphs.to(torch.int16).unsqueeze(1)).abs().to(torch.uint8)
    return torch.where(swap.view(-1, 1, 1, 1).to(images.device), composed.to(images.device), images)


@contextlib.contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """Run small elementwise CPU ops on one thread: on a busy 2-core machine OpenMP's second thread makes
    them ~10× slower (measured: 0.07 s vs 0.98 s for two 128-image views)."""
    n = torch.get_num_threads()
    if not enabled or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def augment_view(
    images: torch.Tensor,
    view: ViewAugment,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    gen: torch.Generator,
    crop: bool = True,
) -> torch.Tensor:
    """One BYOL view of a uint8 batch ``N × 3 × H × W`` → normalised float ``N × 3 × size × size``.

    ``crop=False``: the batch is already the view's random resized crops (``size × size``, flipped), as
    ``pretrain.stream`` cuts them from the image files; only the colour, blur and solarisation steps run.
    """
    x = images.float().div_(255.0)
    n = x.shape[0]
    if crop:
        x = random_resized_crop_flip(x, size, view.crop_scale, view.crop_ratio, view.flip_p, gen)
    x = x.clamp_(0, 1)
    if view.jitter_p > 0:
        x = color_jitter(x, view.jitter_p, view.brightness, view.contrast, view.saturation, view.hue, gen)
    gray = _bernoulli(n, view.grayscale_p, gen).to(x.device)
    if view.grayscale_p > 0 and bool(gray.any()):
        x = torch.where(gray.view(-1, 1, 1, 1), rgb_to_gray(x).expand_as(x), x)
    blur = _bernoulli(n, view.blur_p, gen)
    sigma_scale = size / 224 if view.blur_scale_sigma else 1.0
    sigma = _uniform(n, view.blur_sigma[0] * sigma_scale, view.blur_sigma[1] * sigma_scale, gen)
    if view.blur_p > 0 and bool(blur.any()):
        ks = max(3, int(round(view.blur_kernel_frac * size)) // 2 * 2 + 1)
        ks = min(ks, 2 * (size - 1) + 1 - (2 * (size - 1)) % 2)  # reflect pad must be < size
        idx = torch.nonzero(blur).flatten()
        x[idx.to(x.device)] = gaussian_blur(x[idx.to(x.device)], sigma[idx], ks)
    sol = _bernoulli(n, view.solarize_p, gen).to(x.device)
    if view.solarize_p > 0 and bool(sol.any()):
        x = torch.where(sol.view(-1, 1, 1, 1) & (x >= view.solarize_threshold), 1.0 - x, x)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
