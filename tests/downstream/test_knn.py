"""Weighted kNN and retrieval metrics on hand-made feature banks, predictions worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from downstream.knn import knn_predict, knn_scores, retrieval_metrics, topk_accuracy

# Bank of 2-D features. Cosine similarities to the query direction [1, 0]:
#   b0 1.0 (class 0), b1 0.8 (class 1), b2 0.6 (class 1), b3 0.0 (class 2), b4 -1.0 (class 0)
BANK = torch.tensor([[2.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 5.0], [-1.0, 0.0]])
LABELS = torch.tensor([0, 1, 1, 2, 0])
QUERY = torch.tensor([[3.0, 0.0]])  # not unit length: knn normalises


def test_k1_is_nearest_neighbour():
    scores = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=1, temperature=0.07)
    assert scores.argmax(1).item() == 0
    assert torch.allclose(scores, torch.tensor([[1.0, 0.0, 0.0]]))  # exp((1 - 1)/T) = 1


def test_k3_weights_are_exp_sim_over_T():
    # k = 3, T = 1: votes exp(1), exp(0.8) + exp(0.6), 0 -- up to the common factor exp(-1) -> class 1 wins
    scores = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=3, temperature=1.0)
    expected = torch.tensor([[math.e, math.exp(0.8) + math.exp(0.6), 0.0]]) * math.exp(-1.0)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert scores.argmax(1).item() == 1


def test_temperature_extremes():
    # T -> 0: only the nearest neighbour counts (class 0), even though class 1 has two of the three votes
    tiny = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=3, temperature=1e-6)
    assert torch.isfinite(tiny).all()
    assert tiny.argmax(1).item() == 0
    # T -> inf: unweighted majority vote among k = 3: class 1 (2 votes) beats class 0 (1 vote)
    huge = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=3, temperature=1e6)
    assert torch.allclose(huge, torch.tensor([[1.0, 2.0, 0.0]]), atol=1e-4)
    assert huge.argmax(1).item() == 1


def test_k_larger_than_bank_and_ties():
    # k = 100 > 5 items: all vote. With T huge the counts are class 0: 2, class 1: 2, class 2: 1.
    scores = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=100, temperature=1e6)
    assert torch.allclose(scores, torch.tensor([[2.0, 2.0, 1.0]]), atol=1e-4)
    same = knn_predict(BANK, LABELS, QUERY, num_classes=3, k=5, temperature=1e6)
    assert torch.equal(scores, same)
    # exact tie 0 vs 1 -> the lower class index wins top-1; top-2 contains both
    tie = torch.tensor([[2.0, 2.0, 1.0]])
    assert topk_accuracy(tie, torch.tensor([0]), (1, 2)) == {1: 1.0, 2: 1.0}
    assert topk_accuracy(tie, torch.tensor([1]), (1, 2)) == {1: 0.0, 2: 1.0}
    assert topk_accuracy(tie, torch.tensor([2]), (1, 2, 5)) == {1: 0.0, 2: 0.0, 5: 1.0}


def _naive_knn(bank, labels, queries, num_classes, k, t):
    bank, queries = F.normalize(bank, dim=1), F.normalize(queries, dim=1)
    out = torch.zeros(len(queries), num_classes, dtype=torch.float64)
    for i, q in enumerate(queries):
        sims = [(float(q @ b), int(y)) for b, y in zip(bank, labels)]
        sims.sort(key=lambda s: -s[0])
        top = sims[: min(k, len(sims))]
        for s, y in top:
            out[i, y] += math.exp((s - top[0][0]) / t)
    return out


def test_chunked_matches_naive_loop_for_several_k():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(60, 8, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    queries = torch.randn(13, 8, generator=g)
    multi = knn_scores(bank, labels, queries, 4, [1, 7, 20, 200], 0.1, chunk_size=4)
    for k in (1, 7, 20, 200):
        ref = _naive_knn(bank, labels, queries, 4, k, 0.1)
        assert torch.allclose(multi[k].double(), ref, rtol=1e-4, atol=1e-5), k
        one = knn_predict(bank, labels, queries, 4, k=k, temperature=0.1, chunk_size=1000)
        assert torch.allclose(one, multi[k], atol=1e-6)


def test_feature_dimension_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="dimension mismatch.*D=2.*D=3"):
        knn_predict(BANK, LABELS, torch.ones(1, 3), num_classes=3)
    with pytest.raises(ValueError, match="dimension mismatch"):
        retrieval_metrics(BANK, LABELS, torch.ones(1, 3), torch.tensor([0]))


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_retrieval_metrics_hand_made():
    # Gallery ranked by angle from the queries (both at 0 degrees): g0 10° c1, g1 20° c0, g2 30° c1, g3 40° c0,
    # g4 50° c1.
    gallery = torch.tensor([_unit(a) for a in (10, 20, 30, 40, 50)])
    g_labels = torch.tensor([1, 0, 1, 0, 1])
    queries = torch.tensor([_unit(0), _unit(0), _unit(0)])
    q_labels = torch.tensor([1, 0, 2])  # class 2 is not in the gallery: left out
    m = retrieval_metrics(gallery, g_labels, queries, q_labels, recall_ks=(1, 2, 5))
    # query class 1: R = 3, top-3 relevance 1,0,1 -> AP@R = (1 + 2/3)/3 = 5/9
    # query class 0: R = 2, top-2 relevance 0,1 -> AP@R = (1/2)/2 = 1/4
    assert m["num_queries"] == 2
    assert m["map_at_r"] == pytest.approx((5 / 9 + 1 / 4) / 2)
    assert m["recall_at_1"] == pytest.approx(0.5)
    assert m["recall_at_2"] == pytest.approx(1.0)
    assert m["recall_at_5"] == pytest.approx(1.0)
    # chunking does not change anything
    assert retrieval_metrics(gallery, g_labels, queries, q_labels, (1, 2, 5), chunk_size=1) == m


def test_retrieval_perfect_ranking_is_one():
    gallery = torch.tensor([_unit(a) for a in (0, 1, 90, 91)])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([_unit(0.5), _unit(90.5)])
    m = retrieval_metrics(gallery, labels, queries, torch.tensor([0, 1]))
    assert m["map_at_r"] == pytest.approx(1.0)
    assert m["recall_at_1"] == 1.0
