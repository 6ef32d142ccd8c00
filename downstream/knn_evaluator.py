"""The ``knn`` evaluator: weighted kNN top-1/top-5 and retrieval metrics on cached frozen features.

Bank / gallery = the train split, queries = the test split. With ``grid: true`` a (k, T) grid is scored
with val queries against the same train bank, and test is reported once at the val-best pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from downstream.context import EvalContext
from downstream.evidence import keep_predictions
from downstream.features import FEATURE_LAYERS, get_labelled_features
from downstream.knn import DEFAULT_CHUNK, knn_scores, retrieval_metrics, topk_accuracy
from downstream.registry import register_evaluator

__all__ = ["KnnConfig", "knn"]


@dataclass(frozen=True)
class KnnConfig:
    """``k``/``temperature``: Wu et al. 2018 Sec. 4.1 and DINO (k = 20 and 200, T = 0.07)."""

    k: tuple[int, ...] = (20, 200)
    temperature: float = 0.07
    layer: str = "pool"
    chunk_size: int = DEFAULT_CHUNK  # query rows per similarity block (memory: chunk_size × N_train floats)
    retrieval: bool = True
    recall_ks: tuple[int, ...] = (1, 5, 10)
    grid: bool = False  # choose (k, T) on val from the grid below; report test at the choice
    grid_k: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200)
    grid_temperature: tuple[float, ...] = (0.02, 0.05, 0.07, 0.1, 0.2, 0.5)

    def __post_init__(self) -> None:
        if not self.k or min(self.k) < 1:
            raise ValueError(f"k must be a non-empty list of positive integers, got {list(self.k)}")
        if self.temperature <= 0 or (self.grid_temperature and min(self.grid_temperature) <= 0):
            raise ValueError("temperatures must be positive")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {self.chunk_size}")
        if self.layer not in FEATURE_LAYERS:
            raise ValueError(f"layer '{self.layer}' unknown (known: {', '.join(FEATURE_LAYERS)})")
        if self.grid and (not self.grid_k or not self.grid_temperature or min(self.grid_k) < 1):
            raise ValueError("grid needs non-empty grid_k (positive) and grid_temperature")
        if not self.recall_ks or min(self.recall_ks) < 1:
            raise ValueError("recall_ks must be positive integers")


def _metric_names(cfg: KnnConfig) -> list[str]:
    """Every metric ``knn`` returns under ``cfg`` (the keys written below)."""
    names = [f"top{t}_k{k}" for k in cfg.k for t in (1, 5)]
    if cfg.retrieval:
        names += ["map_at_r", *(f"recall_at_{k}" for k in cfg.recall_ks)]
    if cfg.grid:
        names += ["top1_selected", "top5_selected", "val_top1_selected", "k_selected", "temperature_selected"]
    return names


@register_evaluator(
    "knn",
    config=KnnConfig,
    task="classification",
    frozen=True,
    selection_rule="fixed k and T (no selection); with grid=true, (k, T) chosen by val top-1, test reported once",
    units={p: "fraction" for p in ("top1_*", "top5_*", "val_top1_*", "map_at_r", "recall_at_*")},
    metrics=lambda cfg: _metric_names(cfg),
)
def knn(ctx: EvalContext, cfg: KnnConfig) -> dict[str, float]:
    """Weighted kNN (train bank, test queries) at each ``k``; MAP@R and Recall@K; optional val-chosen grid."""
    dev = ctx.device
    bank, bank_y = get_labelled_features(ctx, "train", cfg.layer, "knn")
    test, test_y = get_labelled_features(ctx, "test", cfg.layer, "knn")
    bank, bank_y = bank.to(dev), torch.from_numpy(bank_y).to(dev)
    test, test_y = test.to(dev), torch.from_numpy(test_y).to(dev)
    num_classes = ctx.load_split("train").num_classes

    metrics: dict[str, float] = {}
    scores = knn_scores(bank, bank_y, test, num_classes, cfg.k, cfg.temperature, cfg.chunk_size)
    for k in cfg.k:
        acc = topk_accuracy(scores[k], test_y, (1, 5))
        metrics[f"top1_k{k}"] = acc[1]
        metrics[f"top5_k{k}"] = acc[5]
        keep_predictions(ctx, f"predictions_test_k{k}.json", scores[k], test_y, split="test", written_by="knn", k=k)
    if cfg.retrieval:
        ret = retrieval_metrics(bank, bank_y, test, test_y, cfg.recall_ks, cfg.chunk_size)
        metrics.update({key: ret[key] for key in ["map_at_r", *(f"recall_at_{k}" for k in cfg.recall_ks)]})

    if cfg.grid:
        val, val_y = get_labelled_features(ctx, "val", cfg.layer, "knn")
        val, val_y = val.to(dev), torch.from_numpy(val_y).to(dev)
        best = (-1.0, 0, 0.0)  # (val top-1, k, T); first best in grid order wins ties
        for t in cfg.grid_temperature:
            val_scores = knn_scores(bank, bank_y, val, num_classes, cfg.grid_k, t, cfg.chunk_size)
            for k in cfg.grid_k:
                acc = topk_accuracy(val_scores[k], val_y, (1,))[1]
                if acc > best[0]:
                    best = (acc, k, t)
        val_top1, k_sel, t_sel = best
        sel = topk_accuracy(
            knn_scores(bank, bank_y, test, num_classes, [k_sel], t_sel, cfg.chunk_size)[k_sel], test_y, (1, 5)
        )
        metrics.update(
            top1_selected=sel[1],
            top5_selected=sel[5],
            val_top1_selected=val_top1,
            k_selected=float(k_sel),
            temperature_selected=float(t_sel),
        )
        ctx.selection.update(split="val", criterion="top-1", k=k_sel, temperature=t_sel)
    return metrics
