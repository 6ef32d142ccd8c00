"""Occlusion, quantified against a known object mask: where does an embedding look?

Occlusion sensitivity (Zeiler & Fergus 2014, Sec. 4.2) on a grid of **non-overlapping** square patches: the
sensitivity of patch ``p`` of image ``x`` is the drop of the cosine similarity between the embedding of ``x``
with ``p`` replaced by a constant (the dataset mean: ``0`` after normalisation) and the embedding of ``x``
itself, ``s_p = 1 − cos(f(x_{-p}), f(x))`` (``≥ 0``; ``0`` when the patch does not move the embedding). No label
is needed, so it applies to any backbone, raw pixels included.

Against a mask ``m`` (the fraction of each pixel the object covers, e.g. ``zoo.datasets.render_shape_mask``),
with ``c_p`` the mean of ``m`` over patch ``p``:

- **in-mask share** ``Σ_p s_p c_p / Σ_p s_p``: the share of the sensitivity that falls on the object (each
  patch's sensitivity spread evenly over its pixels). A network that only sees the object scores 1 when the
  object is a union of patches; a network that sees every pixel alike scores the **chance** level
  ``mean_p c_p`` (the object's share of the image).
- **pointing game** (after Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop", ECCV):
  a hit when the most sensitive patch overlaps the object (``c_p > 0``); chance is the share of
  patches that overlap it.

Non-overlapping patches keep each patch's score its own: a sliding window with stride < size (captum's
``Occlusion`` in ``occlusion.py``, used for the pictures) averages windows and smears sensitivity across the
object's edge, so even a network that only sees the object would score below 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["patch_masks", "patch_occlusion", "patch_coverage", "in_mask_share", "pointing_hits", "pointing_chance"]


def patch_masks(size: int, patch: int) -> torch.Tensor:
    """``G² × S × S`` 0/1 masks of the non-overlapping ``patch × patch`` grid, row-major (``G = S / patch``)."""
    if patch < 1 or size % patch:
        raise ValueError(f"patch size {patch} must divide the image side {size}")
    g = size // patch
    eye = torch.eye(g * g).reshape(g * g, 1, g, g)
    return F.interpolate(eye, scale_factor=patch, mode="nearest")[:, 0]


@torch.no_grad()
def patch_occlusion(
    embed: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    patch: int,
    *,
    baseline: float = 0.0,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Sensitivities ``N × G × G`` of normalised images ``x`` (``N × C × H × W``, ``H = W``):
    ``1 − cos(embed(x with patch p = baseline), embed(x))`` per patch ``p`` of the non-overlapping grid."""
    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"x must be N × C × S × S, got {tuple(x.shape)}")
    n, _, size, _ = x.shape
    masks = patch_masks(size, patch).to(x)  # P × S × S
    p = len(masks)
    g = size // patch
    ref = embed(x).reshape(n, -1)
    per_chunk = max(1, batch_size // p)
    out = []
    for start in range(0, n, per_chunk):
        xi = x[start : start + per_chunk]  # B × C × S × S
        occluded = xi[:, None] * (1 - masks[None, :, None]) + baseline * masks[None, :, None]  # B × P × C × S × S
        z = embed(occluded.reshape(-1, *xi.shape[1:])).reshape(len(xi), p, -1)
        r = ref[start : start + len(xi), None].expand_as(z)
        out.append((1 - F.cosine_similarity(z.double(), r.double(), dim=2)).clamp_min(0).float())
    return torch.cat(out).reshape(n, g, g) if out else torch.zeros(0, g, g)


def patch_coverage(masks: torch.Tensor, patch: int) -> torch.Tensor:
    """``N × G × G``: the mean of each ``N × S × S`` coverage mask over each patch of the grid."""
    if masks.ndim != 3 or masks.shape[1] % patch or masks.shape[2] % patch:
        raise ValueError(f"masks must be N × S × S with S divisible by {patch}, got {tuple(masks.shape)}")
    return F.avg_pool2d(masks[:, None].float(), patch)[:, 0]


def in_mask_share(sensitivity: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Per image (``N``): ``Σ_p s_p c_p / Σ_p s_p``; NaN for an image no patch moves (nothing to share)."""
    if sensitivity.shape != coverage.shape:
        raise ValueError(f"shapes differ: {tuple(sensitivity.shape)} vs {tuple(coverage.shape)}")
    s = sensitivity.double().flatten(1)
    total = s.sum(1)
    share = (s * coverage.double().flatten(1)).sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, float("nan"))).float()


def pointing_hits(sensitivity: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Per image (``N``): 1.0 when the most sensitive patch overlaps the object (coverage > 0), else 0.0; NaN
    when no patch moves the embedding. Ties count as a hit only if every tied patch overlaps it."""
    if sensitivity.shape != coverage.shape:
        raise ValueError(f"shapes differ: {tuple(sensitivity.shape)} vs {tuple(coverage.shape)}")
    s = sensitivity.double().flatten(1)
    c = coverage.flatten(1) > 0
    top = s == s.max(1, keepdim=True).values
    hit = (top & ~c).sum(1) == 0
    out = hit.float()
    return torch.where(s.max(1).values > 0, out, torch.full_like(out, float("nan")))


def pointing_chance(coverage: torch.Tensor) -> torch.Tensor:
    """Per image (``N``): the share of patches that overlap the object (a uniformly random pick's hit rate)."""
    return (coverage.flatten(1) > 0).float().mean(1)
