"""The in-run health signal: weighted kNN accuracy of the current backbone (pretrain's private copy).

``pretrain/`` knows nothing of the evaluators in ``downstream/``; this is a deliberately small classifier
used only to watch training. Weighted voting as in Wu et al. 2018 (arXiv 1805.01978, Eq. 6-7):
each of the k nearest neighbours (cosine similarity s) votes for its class with weight ``exp(s / T)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["knn_predict", "knn_accuracy", "extract_features"]


def knn_predict(
    query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int, t: float
) -> torch.Tensor:
    """Predicted class of each row of ``query`` (``Q × D``) from ``bank`` (``N × D``), weighted kNN.

    Features are l2-normalised here; ``k`` is clipped to the bank size.
    """
    q = F.normalize(query.float(), dim=1)
    b = F.normalize(bank.float(), dim=1)
    sim = q @ b.T  # Q x N
    k = min(k, b.shape[0])
    top_sim, top_idx = sim.topk(k, dim=1)  # Q x k
    weights = (top_sim / t).exp()
    votes = torch.zeros(q.shape[0], num_classes, dtype=weights.dtype, device=q.device)
    votes.scatter_add_(1, bank_labels[top_idx], weights)
    return votes.argmax(1)


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Backbone features of normalised float images (``N × 3 × H × W``), eval mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        feats = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(feats)


def knn_accuracy(
    model: nn.Module,
    bank_images: torch.Tensor,
    bank_labels: torch.Tensor,
    query_images: torch.Tensor,
    query_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    t: float = 0.1,
) -> float:
    """Top-1 accuracy of weighted kNN on ``query`` with ``bank`` as the memory (model in eval mode)."""
    bank = extract_features(model, bank_images)
    query = extract_features(model, query_images)
    pred = knn_predict(query, bank, bank_labels, num_classes, k, t)
    return float((pred == query_labels).float().mean())
