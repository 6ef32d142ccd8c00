"""Independent cross-check of the pretraining result: BYOL built from ``lightly``'s modules, kNN per epoch.

If BYOL's kNN on ``digits-m`` falls below the random initialisation with our trainer, is that our code or
the setting? This script trains the same backbone on the same data with an implementation that shares none
of our BYOL code: the reference loop of ``benchmarks/lightly_reference.py`` (lightly's heads,
``update_momentum``, loss, PIL ``BYOLTransform`` views and ``LARS``; the loop the throughput benchmark
times), with ``cosine_schedule`` for τ and the hyper-parameters of ``configs/byol-digits-m.yaml`` (batch 64, LARS
lr 2.0 × 64 / 256, η 0.001, weight decay 1.5e-6, warm-up 2 epochs then cosine, τ 0.99 → 1, heads 1024 →
256, crop scale ≥ 0.2, blur σ scaled by size / 224). After every epoch it prints the same health signal as
our trainer (weighted kNN, k = 20, T = 0.1, train bank, val queries; ``pretrain.knn``)::

    python benchmarks/probes/lightly_byol_knn.py --epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--base-lr", type=float, default=2.0, help="LARS LR = base × batch / 256")
    parser.add_argument("--min-scale", type=float, default=0.2, help="random resized crop's smallest area")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from lightly.loss import NegativeCosineSimilarity
    from lightly.utils.scheduler import cosine_schedule

    from benchmarks.lightly_reference import LightlyBYOL, lightly_lars, lightly_loader, lightly_step, lightly_views
    from pretrain.config import load_pretrain_config
    from pretrain.knn import knn_accuracy
    from pretrain.optim import lr_at
    from zoo.datasets import DatasetOptions, load_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # lightly's blur and solarize draw from NumPy's global generator
    random.seed(args.seed)
    cfg = load_pretrain_config(
        REPO / "pretrain" / "configs" / "byol-digits-m.yaml",  # the digits-m default this probe was made for
        [f"augment.view1.crop_scale=[{args.min_scale},1.0]", f"augment.view2.crop_scale=[{args.min_scale},1.0]"],
    )
    train = load_dataset("digits-m", "train", DatasetOptions(image_size=32))
    val = load_dataset("digits-m", "val", DatasetOptions(image_size=32))
    loader = lightly_loader(train, lightly_views(cfg.augment, 32, train.mean, train.std), args.batch)

    def clean(split: Any) -> tuple[torch.Tensor, torch.Tensor]:  # un-augmented, normalised images for the kNN signal
        x, y = split.arrays()
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
        mean, std = torch.tensor(split.mean).view(1, 3, 1, 1), torch.tensor(split.std).view(1, 3, 1, 1)
        return (x - mean) / std, torch.from_numpy(y)

    bank, query = clean(train), clean(val)
    model = LightlyBYOL(args.arch, 1024, 256)
    peak = args.base_lr * args.batch / 256
    opt = lightly_lars(model, cfg.optim, peak)
    criterion = NegativeCosineSimilarity()
    total, step = args.epochs * len(loader), 0

    def knn() -> float:
        return knn_accuracy(model.backbone, *bank, *query, num_classes=10)

    print(json.dumps({"epoch": 0, "knn_val_top1": knn()}), flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        for x0, x1 in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, 2 * len(loader), peak)
            loss = lightly_step(model, criterion, opt, x0, x1, cosine_schedule(step, total, 0.99, 1.0))
            step += 1
        rec = {"epoch": epoch, "loss": float(loss), "knn_val_top1": knn()}
        rec["epoch_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
