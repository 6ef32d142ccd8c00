"""Weighted kNN classification and retrieval metrics on frozen features: pure functions.

Weighted kNN follows Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", Sec. 3.4 (also DINO's ``eval_knn.py``, Caron et al. 2021): features are l2-normalised,
similarity is the cosine ``s_i``, the ``k`` most similar bank items vote for their class with weight
``exp(s_i / T)``, and classes are ranked by their summed weight.

Retrieval metrics follow Musgrave et al. 2020, "A Metric Learning Reality Check", Sec. 3.2 (MAP@R) and the
usual metric-learning Recall@K (Song et al. 2016): a gallery item is relevant when it has the query's class.

Every function processes the queries in chunks of ``chunk_size`` rows, so the similarity block in memory is
``chunk_size × N_bank`` floats whatever the number of queries; it runs on whatever device the inputs are on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["knn_predict", "knn_scores", "topk_accuracy", "retrieval_metrics", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 1024


def _check(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor) -> None:
    if bank.ndim != 2 or queries.ndim != 2:
        raise ValueError(f"features must be 2-D (N × D); got bank {tuple(bank.shape)}, queries {tuple(queries.shape)}")
    if bank.shape[1] != queries.shape[1]:
        raise ValueError(
            f"feature dimension mismatch: the bank has D={bank.shape[1]}, the queries D={queries.shape[1]} "
            "(features from different backbones or layers?)"
        )
    if bank_labels.shape != (bank.shape[0],):
        raise ValueError(f"bank_labels must have shape ({bank.shape[0]},), got {tuple(bank_labels.shape)}")
    if len(bank) == 0:
        raise ValueError("the feature bank is empty")


def knn_scores(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    ks: Sequence[int],
    temperature: float,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[int, torch.Tensor]:
    """Class scores ``Q × C`` of weighted kNN (Wu et al. 2018, Sec. 3.4) for several ``k`` in one pass.

    ``bank`` N × D and ``queries`` Q × D are l2-normalised here. A query's ``k`` nearest bank items by cosine
    similarity ``s`` vote for their label with weight ``exp(s / T)``. ``k`` larger than the bank is clamped
    to the bank size (every item votes). The weights are computed as ``exp((s - s_max) / T)``, the same up
    to a per-query factor, so no ranking changes and tiny ``T`` cannot overflow: ``T → 0`` is 1-NN, ``T → ∞``
    an unweighted majority vote. Which of several equally similar items fills the last of ``k`` places is
    unspecified.
    """
    _check(bank, bank_labels, queries)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be ≥ 1, got {list(ks)}")
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    bank_labels = bank_labels.to(bank.device).long()
    kmax = min(max(ks), len(bank))
    out = {k: torch.empty(len(queries), num_classes, device=bank.device) for k in ks}
    bank_t = bank.t()  # D × N view: BLAS reads it transposed, no copy
    buf = torch.empty(min(chunk_size, len(queries)), len(bank), device=bank.device)  # reused: no page faults
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size].to(bank.device)
        sim = torch.mm(q, bank_t, out=buf[: len(q)])  # chunk × N
        top_sim, top_idx = sim.topk(kmax, dim=1, largest=True, sorted=True)  # chunk × kmax
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp_()
        labels = bank_labels[top_idx]  # chunk × kmax
        for k in ks:
            kk = min(k, kmax)
            scores = torch.zeros(len(labels), num_classes, device=bank.device)
            scores.scatter_add_(1, labels[:, :kk], weights[:, :kk])
            out[k][start : start + len(labels)] = scores
    return out


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Class scores ``Q × C`` of weighted kNN with one ``k`` (see ``knn_scores``); ``argmax`` predicts.

    Defaults k = 20, T = 0.07: Wu et al. 2018 (Sec. 4.1) and DINO's ``eval_knn.py``.
    """
    return knn_scores(bank, bank_labels, queries, num_classes, [k], temperature, chunk_size)[k]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose true label is among the ``k`` highest scores (``k`` clamped to the classes).

    Ties between classes are broken towards the lower class index (stable sort), so a query whose vote
    is split evenly between classes 2 and 7 predicts 2.
    """
    if len(scores) == 0:
        raise ValueError("no queries to score")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hit = order == labels.to(scores.device).long().view(-1, 1)
    return {k: float(hit[:, : min(k, scores.shape[1])].any(dim=1).double().mean()) for k in ks}


def retrieval_metrics(
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    recall_ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """MAP@R and Recall@K of cosine-similarity retrieval, relevance = same class.

    MAP@R (Musgrave et al. 2020, Eq. in Sec. 3.2): with ``R`` = number of gallery items of the query's class,
    ``AP@R = (1/R) Σ_{i≤R} P(i)·rel(i)`` over the top ``R`` results, averaged over queries. Recall@K: the
    fraction of queries with at least one relevant item among the top ``K``. Queries whose class has no
    gallery item are left out of both (nothing could be retrieved); ``num_queries`` counts the rest.
    Returns ``{"map_at_r", "recall_at_<K>"..., "num_queries"}``.
    """
    _check(gallery, gallery_labels, queries)
    gallery = F.normalize(gallery.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    gallery_labels = gallery_labels.to(gallery.device).long()
    query_labels = query_labels.to(gallery.device).long()
    n_classes = int(max(gallery_labels.max(), query_labels.max())) + 1
    per_class = torch.bincount(gallery_labels, minlength=n_classes)
    r_all = per_class[query_labels]  # Q: R of each query
    keep = r_all > 0
    queries, query_labels, r_all = queries[keep], query_labels[keep], r_all[keep]
    if len(queries) == 0:
        raise ValueError("no query has a relevant item in the gallery")
    depth = min(len(gallery), max(int(r_all.max()), max(recall_ks)))
    gallery_t = gallery.t()
    ap_sum, hits = 0.0, {k: 0.0 for k in recall_ks}
    ranks = torch.arange(1, depth + 1, device=gallery.device, dtype=torch.float32)
    buf = torch.empty(min(chunk_size, len(queries)), len(gallery), device=gallery.device)
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        sim = torch.mm(q, gallery_t, out=buf[: len(q)])  # chunk × N
        idx = sim.topk(depth, dim=1, largest=True, sorted=True).indices
        rel = (gallery_labels[idx] == query_labels[start : start + len(q)].view(-1, 1)).float()  # chunk × depth
        r = r_all[start : start + len(q)].float()
        within_r = (ranks.view(1, -1) <= r.view(-1, 1)).float()
        precision = rel.cumsum(1) / ranks
        ap_sum += float(((precision * rel * within_r).sum(1) / r).sum())
        for k in recall_ks:
            hits[k] += float(rel[:, :k].any(1).float().sum())
    n = len(queries)
    out = {"map_at_r": ap_sum / n}
    out.update({f"recall_at_{k}": hits[k] / n for k in recall_ks})
    out["num_queries"] = float(n)
    return out
