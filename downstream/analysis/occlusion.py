"""Occlusion sensitivity (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
Sec. 4.2): slide a grey patch over the image and record how much a score drops.

The score is label-free, so it works for any artifact: the cosine similarity between the embedding of the
occluded image and that of the unoccluded one (``1`` unoccluded). The sliding window is captum's
``Occlusion`` (a maintained attribution library); its attribution for a pixel is the mean score drop over
the windows that cover it. The patch value is the dataset mean (``0`` after normalisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["occlusion_map", "cosine_score"]


def cosine_score(
    embed: Callable[[torch.Tensor], torch.Tensor], reference: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ cos(embed(x), reference)`` per row: the score whose drop the occlusion map shows."""
    ref = reference.reshape(1, -1)

    def score(x: torch.Tensor) -> torch.Tensor:
        z = embed(x).reshape(len(x), -1)
        return F.cosine_similarity(z, ref.to(z).expand_as(z), dim=1)

    return score


@torch.no_grad()
def occlusion_map(
    embed: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    window: int = 8,
    stride: int = 4,
    baseline: float = 0.0,
    perturbations_per_eval: int = 64,
) -> torch.Tensor:
    """Occlusion maps ``N × H × W`` for normalised images ``x`` (N × C × H × W): the drop of
    ``cos(embed(occluded), embed(x))`` when a ``window × window`` patch of value ``baseline`` covers a pixel,
    averaged over the windows covering it (captum ``Occlusion``). Positive = the embedding relies on it."""
    from captum.attr import Occlusion

    maps = []
    for i in range(len(x)):
        xi = x[i : i + 1]
        score = cosine_score(embed, embed(xi))
        attr = Occlusion(score).attribute(
            xi,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride),
            baselines=baseline,
            perturbations_per_eval=perturbations_per_eval,
        )
        maps.append(attr[0].mean(0))  # the same value on every channel: the window spans them all
    return torch.stack(maps) if maps else torch.zeros(0, *x.shape[2:])
