"""The reference BYOL loop built from ``lightly``'s modules (the ``perf`` extra), shared by two scripts.

``benchmarks/perf/pretrain_throughput.py`` times it against our trainer and
``benchmarks/probes/lightly_byol_knn.py`` trains with it to cross-check our trainer's kNN curve. Both thus
measure the very same reference: lightly's ``BYOLProjectionHead`` / ``BYOLPredictionHead``,
``update_momentum``, ``NegativeCosineSimilarity``, PIL ``BYOLTransform`` views and ``LARS``, in the loop of
lightly's BYOL example, with the strengths and hyper-parameters of one of our ``PretrainConfig``s.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pretrain.config import AugmentConfig, OptimConfig, ViewAugment
from zoo.backbones import build_backbone

__all__ = ["LightlyBYOL", "lightly_views", "lightly_loader", "lightly_lars", "lightly_step"]


def lightly_views(augment: AugmentConfig, image_size: int, mean: Sequence[float], std: Sequence[float]) -> Any:
    """lightly's ``BYOLTransform`` with our config's probabilities and strengths (σ scaled by size / 224)."""
    from lightly.transforms.byol_transform import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    scale = image_size / 224

    def view(v: ViewAugment, cls: type) -> Any:
        return cls(
            input_size=image_size,
            cj_prob=v.jitter_p,
            cj_bright=v.brightness,
            cj_contrast=v.contrast,
            cj_sat=v.saturation,
            cj_hue=v.hue,
            min_scale=v.crop_scale[0],
            random_gray_scale=v.grayscale_p,
            gaussian_blur=v.blur_p,
            solarization_prob=v.solarize_p,
            sigmas=(v.blur_sigma[0] * scale, v.blur_sigma[1] * scale),
            hf_prob=v.flip_p,
            normalize={"mean": list(mean), "std": list(std)},
        )

    return BYOLTransform(
        view_1_transform=view(augment.view1, BYOLView1Transform),
        view_2_transform=view(augment.view2, BYOLView2Transform),
    )


def lightly_loader(split: Any, transform: Any, batch: int, limit: int | None = None, workers: int = 0) -> Any:
    """A plain shuffling ``DataLoader`` of ``transform``'s two views of the first ``limit`` images of ``split``."""
    n = len(split) if limit is None else min(limit, len(split))

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> list[torch.Tensor]:
            return transform(split[i][0])

    return torch.utils.data.DataLoader(Views(), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers)


class LightlyBYOL(nn.Module):
    """lightly's BYOL example model: our backbone, lightly's heads, momentum copies without gradients."""

    def __init__(self, arch: str, hidden: int, out: int, predictor_hidden: int | None = None) -> None:
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.backbone = build_backbone(arch)
        self.projection_head = BYOLProjectionHead(self.backbone.feature_dim, hidden, out)
        self.prediction_head = BYOLPredictionHead(out, predictor_hidden or hidden, out)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()


def lightly_lars(model: nn.Module, optim: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """lightly's ``LARS`` over the trainable parameters with our config's momentum, weight decay and η."""
    from lightly.utils.lars import LARS

    params = [p for p in model.parameters() if p.requires_grad]
    return LARS(
        params, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay, trust_coefficient=optim.lars_eta
    )


def lightly_step(
    model: LightlyBYOL,
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    x0: torch.Tensor,
    x1: torch.Tensor,
    m: float,
    loss_scale: float = 1.0,
) -> torch.Tensor:
    """One step of lightly's BYOL example: momentum update with ``m``, symmetric loss, backward, optimiser step.

    ``loss_scale`` multiplies the loss before ``backward``: lightly's ``0.5·(−cos − cos)`` has a quarter of
    the gradient of the paper's ``(2 − 2cos) + (2 − 2cos)`` (ours), so ``loss_scale=4`` trains with exactly
    our gradients, which matters for SGD (LARS's trust ratio mostly hides the scale). Returns the unscaled loss.
    """
    from lightly.models.utils import update_momentum

    update_momentum(model.backbone, model.backbone_momentum, m=m)
    update_momentum(model.projection_head, model.projection_head_momentum, m=m)
    p0, z0 = model(x0), model.forward_momentum(x0)
    p1, z1 = model(x1), model.forward_momentum(x1)
    loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
    (loss * loss_scale if loss_scale != 1.0 else loss).backward()
    opt.step()
    opt.zero_grad()
    return loss.detach()
