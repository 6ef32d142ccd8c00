"""Reference artifacts every suite can use: ``random-init`` and ``supervised``.

``supervised`` trains the same backbone with labels (cross-entropy, SGD + cosine, random-crop and flip) on
the same training split the self-supervised run sees: the usual upper reference in SSL tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoo.artifact import ArtifactMeta, save_artifact
from zoo.backbones import build_backbone, get_spec
from zoo.config import to_dict
from zoo.datasets import ClassificationSplit, DatasetOptions, load_dataset

__all__ = [
    "SupervisedConfig",
    "random_crop_flip",
    "random_init_artifact",
    "supervised_artifact",
    "to_normalized_tensor",
]


@dataclass(frozen=True)
class SupervisedConfig:
    arch: str = "resnet18"
    dataset: str = "digits-m"
    image_size: int = 32
    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        get_spec(self.arch)
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.warmup_epochs < 0:
            raise ValueError("epochs, batch_size and lr must be positive, warmup_epochs >= 0")


def to_normalized_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``N×H×W×3`` → float ``N×3×H×W`` normalised with ``mean``/``std``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def random_init_artifact(out_dir: str | Path, arch: str = "resnet18", seed: int = 0, input_size: int = 32) -> Path:
    """Save torchvision's default initialisation of ``arch`` (seeded) as an artifact."""
    torch.manual_seed(seed)
    model = build_backbone(arch)
    meta = ArtifactMeta(
        architecture=arch,
        feature_dim=get_spec(arch).feature_dim,
        input_size=input_size,
        method="random-init",
        seed=seed,
        epochs=0,
        config={"arch": arch, "seed": seed},
    )
    return save_artifact(out_dir, model, meta)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int, flip: bool = True) -> torch.Tensor:
    """Random crop with reflection padding and (unless ``flip=False``) horizontal flip, per image, batched."""
    n, _, h, w = x.shape
    xp = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flipped = torch.rand(n, generator=gen) < 0.5
    if flip:
        out[flipped] = out[flipped].flip(3)
    return out


def supervised_artifact(out_dir: str | Path, cfg: SupervisedConfig, log: Callable[[str], None] = print) -> Path:
    """Train ``cfg.arch`` with labels on the train split of ``cfg.dataset``; save it as an artifact."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train: ClassificationSplit = load_dataset(cfg.dataset, "train", DatasetOptions(image_size=cfg.image_size))
    images, labels = train.arrays()
    x_all = to_normalized_tensor(images, train.mean, train.std)
    y_all = torch.from_numpy(labels)
    model = build_backbone(cfg.arch)
    head = nn.Linear(model.feature_dim, train.num_classes)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(y_all) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(y_all), generator=gen)
        correct = 0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = random_crop_flip(x_all[idx], gen, pad=max(1, cfg.image_size // 8))
            logits = head(model(x))
            loss = nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y_all[idx]).sum())
        log(f"supervised epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f} train-acc {correct / len(y_all):.3f}")
    meta = ArtifactMeta(
        architecture=cfg.arch,
        feature_dim=model.feature_dim,
        input_size=cfg.image_size,
        method="supervised",
        mean=train.mean,
        std=train.std,
        dataset=cfg.dataset,
        epochs=cfg.epochs,
        seed=cfg.seed,
        config=to_dict(cfg),
        extra={"train_seconds": round(time.time() - start, 1), "train_split": train.describe()},
    )
    return save_artifact(out_dir, model, meta)
