"""Numbers next to a 2-D map (t-SNE, UMAP): does the picture keep the neighbourhoods it shows?

- **Trustworthiness** (Venna & Kaski 2001; scikit-learn's ``sklearn.manifold.trustworthiness``): 1 when
  every point's ``k`` nearest neighbours in the map are also among its nearest neighbours in the features,
  lower when the map invents neighbours. Features are l2-normalised first, as ``figures.project_2d`` does
  before t-SNE, so both sides use the same geometry.
- **Class separation in the map**: leave-one-out ``k``-nearest-neighbour accuracy (majority vote) of the
  class in the 2-D coordinates, beside the same vote in the features (cosine), so a map that separates
  classes better or worse than the features it came from shows it.
- **What the map groups by**: leave-one-out ``k``-NN regression R² of a continuous factor in the 2-D
  coordinates (the mean of the neighbours' values): 1 when neighbours in the picture share the factor, ≈ 0
  (or below) when the factor is scattered, the number behind "colour the map by each factor".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["loo_knn_accuracy", "loo_knn_r2", "map_scores"]


def loo_knn_accuracy(points: np.ndarray | torch.Tensor, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out ``k``-NN accuracy (Euclidean, majority vote, ties to the nearest neighbour's class)."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points, got {len(x)}")
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    idx = d.topk(k, largest=False).indices  # N × k, nearest first
    votes = F.one_hot(y[idx], int(y.max()) + 1).double()  # N × k × C
    weights = torch.linspace(1.0, 1.0 - 1e-6, k, dtype=torch.float64)[None, :, None]  # ties → nearer wins
    pred = (votes * weights).sum(1).argmax(1)
    return float((pred == y).double().mean())


def loo_knn_r2(points: np.ndarray | torch.Tensor, values: np.ndarray, k: int = 5) -> float:
    """Leave-one-out ``k``-NN regression R² (Euclidean; prediction = mean of the ``k`` neighbours' values)."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    v = torch.as_tensor(np.asarray(values), dtype=torch.float64).reshape(-1)
    if len(x) <= k:
        raise ValueError(f"need more than k={k} points, got {len(x)}")
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    pred = v[d.topk(k, largest=False).indices].mean(1)
    total = float(((v - v.mean()) ** 2).sum())
    return 1.0 - float(((v - pred) ** 2).sum()) / total if total > 0 else float("nan")


def map_scores(
    features: np.ndarray | torch.Tensor, xy: np.ndarray, labels: np.ndarray, *, k: int = 5, trust_k: int = 10
) -> dict[str, float]:
    """``trustworthiness`` (``trust_k`` neighbours) of the map ``xy`` for ``features``, ``knn_2d`` (the class by
    leave-one-out ``k``-NN in the map) and ``knn_features`` (the same vote in the l2-normalised features)."""
    from sklearn.manifold import trustworthiness

    z = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float64), dim=1).numpy()
    return {
        "trustworthiness": float(trustworthiness(z, np.asarray(xy, dtype=np.float64), n_neighbors=trust_k)),
        "knn_2d": loo_knn_accuracy(xy, labels, k),
        "knn_features": loo_knn_accuracy(z, labels, k),
    }
