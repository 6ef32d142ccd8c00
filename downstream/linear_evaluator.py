"""The ``linear`` evaluator: a linear classifier on the frozen backbone, in two protocols.

- ``fast`` (default): L2-regularised multinomial logistic regression on the cached features, L-BFGS in
  torch, λ chosen by val top-1 from a log-spaced sweep (``downstream.linear``). Test is scored once, with
  the val-chosen model.
- ``standard``: a linear layer (after a parameter-free BatchNorm, as in MAE's linear probe, He et al. 2022
  Sec. A.2) trained with SGD + cosine schedule for a fixed number of epochs on augmented images (random
  crop + flip) through the frozen backbone. Reports the final epoch, never a best epoch.

Low-shot: ``label_fraction`` (e.g. 0.01, 0.1) or ``shots_per_class`` trains either protocol on ``draws``
stratified subsets of the train labels and reports mean and std over draws (val and test stay whole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from downstream.context import EvalContext
from downstream.evidence import keep_predictions
from downstream.features import FEATURE_LAYERS, get_labelled_features
from downstream.knn import topk_accuracy
from downstream.linear import (
    duplicate_column_groups,
    l2_grid,
    low_shot_indices,
    merge_columns,
    standardize,
    sweep_l2,
)
from downstream.registry import register_evaluator
from zoo.baselines import random_crop_flip, to_normalized_tensor

__all__ = ["LinearConfig", "linear"]


@dataclass(frozen=True)
class LinearConfig:
    protocol: Literal["fast", "standard"] = "fast"
    layer: str = "pool"
    # fast: λ grid (Kornblith et al. 2019: log-spaced in [1e-6, 1e5]), features standardised by train stats
    l2_min: float = 1e-6
    l2_max: float = 1e5
    l2_steps: int = 23
    standardize: bool = True
    max_iter: int = 1000
    tol: float = 1e-4  # max |gradient| at which L-BFGS stops (scikit-learn's default tol)
    patience: int | None = None  # stop the λ sweep after this many λ below the best on val (None: whole grid)
    # standard: fixed hyper-parameters, final epoch reported
    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    hflip: bool = True  # random horizontal flips (the ImageNet protocol); false for digits, text, …
    # low-shot: one of these, then mean ± std over `draws` stratified subsets of train
    label_fraction: float | None = None
    shots_per_class: int | None = None
    draws: int = 5

    def __post_init__(self) -> None:
        if self.layer not in FEATURE_LAYERS:
            raise ValueError(f"layer '{self.layer}' unknown (known: {', '.join(FEATURE_LAYERS)})")
        if not 0 < self.l2_min <= self.l2_max or self.l2_steps < 1:
            raise ValueError("need 0 < l2_min <= l2_max and l2_steps >= 1")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be ≥ 1 or null, got {self.patience}")
        if self.max_iter < 1 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.draws < 1:
            raise ValueError("max_iter, epochs, batch_size, lr and draws must be positive")
        if self.label_fraction is not None and self.shots_per_class is not None:
            raise ValueError("give label_fraction or shots_per_class, not both")
        if self.label_fraction is not None and not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.shots_per_class is not None and self.shots_per_class < 1:
            raise ValueError(f"shots_per_class must be ≥ 1, got {self.shots_per_class}")

    @property
    def low_shot(self) -> bool:
        return self.label_fraction is not None or self.shots_per_class is not None


def _fast(
    ctx: EvalContext, cfg: LinearConfig, train_idx: np.ndarray | None, keep_as: str | None = None
) -> tuple[dict[str, float], dict[str, object]]:
    """Logistic regression on cached features, λ chosen on val. Returns (metrics, selection details)."""
    dev = ctx.device
    x_tr, y_tr = get_labelled_features(ctx, "train", cfg.layer, "linear")
    x_va, y_va = get_labelled_features(ctx, "val", cfg.layer, "linear")
    x_te, y_te = get_labelled_features(ctx, "test", cfg.layer, "linear")
    if train_idx is not None:
        x_tr, y_tr = x_tr[torch.from_numpy(train_idx)], y_tr[train_idx]
    x_tr, x_va, x_te = (t.to(dev) for t in (x_tr, x_va, x_te))
    # the same problem on fewer columns: columns equal after standardising (a grayscale image as RGB) merge
    # and constant ones drop, which leaves the optimum and every logit unchanged (downstream.linear)
    dims = x_tr.shape[1]
    groups = duplicate_column_groups(x_tr) if cfg.standardize else [[j] for j in range(dims)]
    if cfg.standardize:
        x_tr, x_va, x_te = standardize(x_tr, x_va, x_te)
    if len(groups) < dims:
        x_tr, x_va, x_te = (merge_columns(t, groups) for t in (x_tr, x_va, x_te))
    num_classes = ctx.load_split("train").num_classes
    grid = l2_grid(cfg.l2_min, cfg.l2_max, cfg.l2_steps)
    y_tr_t, y_va_t = torch.from_numpy(y_tr).to(dev), torch.from_numpy(y_va).to(dev)
    infos: list[dict[str, float]] = []
    best, val_accs, models = sweep_l2(
        x_tr, y_tr_t, x_va, y_va_t, num_classes, grid, max_iter=cfg.max_iter, tol=cfg.tol, infos=infos,
        patience=cfg.patience,
    )  # fmt: skip
    grid = grid[: len(val_accs)]  # the λ actually fitted (patience may stop the sweep early)
    W, b = models[best]
    y_te_t = torch.from_numpy(y_te).to(dev)
    test = topk_accuracy(x_te @ W.t() + b, y_te_t, (1, 5))
    if keep_as:
        keep_predictions(
            ctx, keep_as, x_te @ W.t() + b, y_te_t, split="test", written_by="linear (fast)", l2=grid[best]
        )
    metrics = {"top1": test[1], "top5": test[5], "val_top1": val_accs[best], "l2": grid[best]}
    selection = {
        "l2": grid[best],
        "columns": {"features": dims, "solved": int(x_tr.shape[1])},
        "l2_grid": grid,
        "val_top1_per_l2": val_accs,
        # λ values whose fit stopped at max_iter with max |gradient| still above tol (normally none)
        "unconverged_l2": [lam for lam, i in zip(grid, infos) if not i["converged"]],
    }
    return metrics, selection


def _standard(
    ctx: EvalContext, cfg: LinearConfig, train_idx: np.ndarray | None, seed: int, keep_as: str | None = None
) -> tuple[dict[str, float], dict[str, object]]:
    """SGD on a linear head over the frozen backbone with crop + flip; the final epoch is evaluated."""
    dev = ctx.device
    art = ctx.artifact
    layer_fn = FEATURE_LAYERS[cfg.layer]
    split = ctx.load_split("train")
    dim = get_labelled_features(ctx, "train", cfg.layer, "linear")[0].shape[1]  # also checks the labels
    images, labels = split.arrays()
    if train_idx is not None:
        images, labels = images[train_idx], labels[train_idx]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, split.num_classes)).to(dev)
    nn.init.normal_(head[1].weight, std=0.01)  # MoCo v3 / MAE linear-probe init
    nn.init.zeros_(head[1].bias)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    y_all = torch.from_numpy(labels)
    pad = max(1, int(images.shape[1]) // 8)
    art.model.eval()  # frozen: BN uses its running statistics, which must not move
    loss = torch.zeros(())
    for _ in range(cfg.epochs):
        head.train()
        perm = torch.randperm(len(labels), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two rows in train mode
                continue
            x = to_normalized_tensor(images[idx.numpy()], art.meta.mean, art.meta.std)
            x = random_crop_flip(x, gen, pad, flip=cfg.hflip)
            with torch.no_grad():
                feats = layer_fn(art, x.to(dev)).reshape(len(idx), -1)
            with torch.enable_grad():
                loss = nn.functional.cross_entropy(head(feats), y_all[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            sched.step()
    head.eval()
    out = {}
    with torch.no_grad():
        for name in ("val", "test"):
            x, y = get_labelled_features(ctx, name, cfg.layer, "linear")
            logits, y_t = head(x.to(dev)), torch.from_numpy(y).to(dev)
            out[name] = topk_accuracy(logits, y_t, (1, 5))
            if name == "test" and keep_as:
                keep_predictions(ctx, keep_as, logits, y_t, split="test", written_by="linear (standard)")
    metrics = {"top1": out["test"][1], "top5": out["test"][5], "val_top1": out["val"][1], "train_loss": float(loss)}
    return metrics, {"rule": "final epoch", "epoch": cfg.epochs}


def _metric_names(cfg: LinearConfig) -> list[str]:
    """Every metric ``linear`` returns under ``cfg`` (the keys of ``_fast``, ``_standard`` and the low-shot means)."""
    if cfg.low_shot:
        return [f"{k}_{s}" for k in ("top1", "top5", "val_top1") for s in ("mean", "std")] + ["draws", "train_size"]
    return ["top1", "top5", "val_top1", "l2" if cfg.protocol == "fast" else "train_loss"]


@register_evaluator(
    "linear",
    config=LinearConfig,
    task="classification",
    frozen=True,
    selection_rule=(
        "fast: L2 strength chosen by val top-1 from a log-spaced sweep, model fit on train, test reported once; "
        "standard: fixed hyper-parameters, final epoch reported; low-shot: the same per draw, mean and std"
    ),
    units={p: "fraction" for p in ("top1", "top5", "val_top1", "top1_*", "top5_*", "val_top1_*")},
    metrics=lambda cfg: _metric_names(cfg),
)
def linear(ctx: EvalContext, cfg: LinearConfig) -> dict[str, float]:
    """Linear probe (fast or standard protocol), optionally low-shot over several label draws."""

    def run(train_idx: np.ndarray | None, seed: int, keep_as: str) -> tuple[dict[str, float], dict[str, object]]:
        if cfg.protocol == "fast":
            return _fast(ctx, cfg, train_idx, keep_as)
        return _standard(ctx, cfg, train_idx, seed, keep_as)

    if not cfg.low_shot:
        metrics, selection = run(None, ctx.seed, "predictions_test.json")
        ctx.selection.update(protocol=cfg.protocol, split="val" if cfg.protocol == "fast" else None, **selection)
        return metrics

    _, y_tr = get_labelled_features(ctx, "train", cfg.layer, "linear")
    draws, selections, sizes = [], [], []
    for d in range(cfg.draws):
        draw_seed = ctx.seed * 1000 + d
        idx = low_shot_indices(y_tr, fraction=cfg.label_fraction, per_class=cfg.shots_per_class, seed=draw_seed)
        m, s = run(idx, draw_seed, f"predictions_test_draw{d}.json")
        draws.append(m)
        selections.append(s.get("l2"))
        sizes.append(len(idx))
    metrics: dict[str, float] = {}
    for key in ("top1", "top5", "val_top1"):
        vals = np.array([m[key] for m in draws])
        metrics[f"{key}_mean"] = float(vals.mean())
        metrics[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    metrics["draws"] = float(cfg.draws)
    metrics["train_size"] = float(np.mean(sizes))
    ctx.selection.update(
        protocol=cfg.protocol,
        split="val" if cfg.protocol == "fast" else None,
        per_draw={"l2": selections, "train_size": sizes, "top1": [m["top1"] for m in draws]},
    )
    return metrics
