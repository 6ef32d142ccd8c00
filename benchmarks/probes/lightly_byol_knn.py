"""Independent cross-check of the pretraining result: BYOL built from ``lightly``'s modules, kNN per epoch.

If BYOL's kNN on ``digits-m`` falls below the random initialisation with our trainer, is that our code or
the setting? This script trains the same backbone on the same data with an implementation that shares none
of our BYOL code: lightly's ``BYOLProjectionHead`` / ``BYOLPredictionHead``, ``update_momentum``,
``cosine_schedule``, ``NegativeCosineSimilarity``, its PIL ``BYOLTransform`` views and its ``LARS``, in the
loop of lightly's BYOL example, with the hyper-parameters of ``pretrain/configs/byol.yaml`` (batch 64, LARS
lr 2.0 × 64 / 256, η 0.001, weight decay 1.5e-6, warm-up 2 epochs then cosine, τ 0.99 → 1, heads 1024 →
256, crop scale ≥ 0.2, blur σ scaled by size / 224). After every epoch it prints the same health signal as
our trainer (weighted kNN, k = 20, T = 0.1, train bank, val queries; ``pretrain.knn``)::

    python benchmarks/probes/lightly_byol_knn.py --epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

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
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms.byol_transform import BYOLTransform, BYOLView1Transform, BYOLView2Transform
    from lightly.utils.lars import LARS
    from lightly.utils.scheduler import cosine_schedule

    from pretrain.knn import knn_accuracy
    from pretrain.optim import lr_at
    from zoo.backbones import build_backbone
    from zoo.datasets import DatasetOptions, load_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_dataset("digits-m", "train", DatasetOptions(image_size=32))
    val = load_dataset("digits-m", "val", DatasetOptions(image_size=32))
    norm = {"mean": list(train.mean), "std": list(train.std)}
    s = 32 / 224  # the paper's σ range (0.1, 2.0) at 224 px, scaled to 32 px as our config does
    common = {"input_size": 32, "min_scale": args.min_scale, "sigmas": (0.1 * s, 2.0 * s), "normalize": norm}
    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(**common), view_2_transform=BYOLView2Transform(**common)
    )

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(train)

        def __getitem__(self, i: int) -> list[torch.Tensor]:
            return transform(train[i][0])

    loader = torch.utils.data.DataLoader(Views(), batch_size=args.batch, shuffle=True, drop_last=True)

    def clean(split: Any) -> tuple[torch.Tensor, torch.Tensor]:  # un-augmented, normalised images for the kNN signal
        x, y = split.arrays()
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
        mean, std = torch.tensor(split.mean).view(1, 3, 1, 1), torch.tensor(split.std).view(1, 3, 1, 1)
        return (x - mean) / std, torch.from_numpy(y)

    bank, query = clean(train), clean(val)
    backbone = build_backbone(args.arch)
    projector = BYOLProjectionHead(backbone.feature_dim, 1024, 256)
    predictor = BYOLPredictionHead(256, 1024, 256)
    backbone_t, projector_t = copy.deepcopy(backbone), copy.deepcopy(projector)
    deactivate_requires_grad(backbone_t)
    deactivate_requires_grad(projector_t)
    params = [*backbone.parameters(), *projector.parameters(), *predictor.parameters()]
    peak = args.base_lr * args.batch / 256
    opt = LARS(params, lr=peak, momentum=0.9, weight_decay=1.5e-6, trust_coefficient=0.001)
    criterion = NegativeCosineSimilarity()
    total, step = args.epochs * len(loader), 0

    def knn() -> float:
        return knn_accuracy(backbone, *bank, *query, num_classes=10)

    print(json.dumps({"epoch": 0, "knn_val_top1": knn()}), flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        for x0, x1 in loader:
            m = cosine_schedule(step, total, 0.99, 1.0)
            update_momentum(backbone, backbone_t, m)
            update_momentum(projector, projector_t, m)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, 2 * len(loader), peak)
            p0, p1 = predictor(projector(backbone(x0))), predictor(projector(backbone(x1)))
            with torch.no_grad():
                z0, z1 = projector_t(backbone_t(x0)), projector_t(backbone_t(x1))
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        rec = {"epoch": epoch, "loss": float(loss.detach()), "knn_val_top1": knn()}
        rec["epoch_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
