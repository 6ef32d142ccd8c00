"""BYOL (Grill et al. 2020, "Bootstrap your own latent", arXiv 2006.07733): maths and networks.

The maths are small pure functions (no config objects):

- ``byol_loss(p, z)``: Eq. 2, ``2 − 2·cos(p, z)`` with ``z`` detached (the stop-gradient of Fig. 2).
- ``symmetric_byol_loss``: Eq. 5, the loss summed over both view orders.
- ``update_ema(online, target, tau)``: Eq. 1, ``ξ ← τ ξ + (1 − τ) θ``.
- ``tau_schedule(step, total, base)``: Sec. 3.3, ``τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2``.

``BYOL`` holds the online network (backbone → projector → predictor) and the target network (backbone →
projector), a separate copy that never receives gradients and changes only through ``update_ema``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.heads import MLPSpec, build_mlp

__all__ = ["byol_loss", "symmetric_byol_loss", "update_ema", "tau_schedule", "projection_std", "BYOL"]


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``‖p̄ − z̄‖² = 2 − 2·⟨p, z⟩/(‖p‖‖z‖)`` (paper Eq. 2), ``z`` stop-gradient.

    ``p``: online predictions ``B × D``; ``z``: target projections ``B × D`` (detached here, so no gradient
    can reach the target network whatever the caller passes).
    """
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


def symmetric_byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``L + L̃`` of paper Eq. 5: view 1's prediction regresses view 2's target projection and vice versa."""
    return byol_loss(p1, z2) + byol_loss(p2, z1)


@torch.no_grad()
def update_ema(online: nn.Module, target: nn.Module, tau: float, buffers: bool = True, foreach: bool = True) -> None:
    """``ξ ← τ·ξ + (1 − τ)·θ`` for every parameter (paper Eq. 1), in place on ``target``.

    With ``buffers`` the floating-point buffers (BN running mean/var) follow the same rule; integer buffers
    (``num_batches_tracked``) are copied. Without it every buffer is copied from ``online``.
    ``tau = 0`` makes the target an exact copy of the online network; ``tau = 1`` leaves it unchanged.
    ``foreach`` does it with torch's multi-tensor ops (one call per kind of tensor); ``False`` is the
    per-tensor loop, the reference the multi-tensor path is tested against.
    """
    t_params, o_params = list(target.parameters()), [p.detach() for p in online.parameters()]
    t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
    if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs):
        raise ValueError(
            f"update_ema: online and target differ in structure ({len(o_params)} vs {len(t_params)} parameters, "
            f"{len(o_bufs)} vs {len(t_bufs)} buffers)"
        )
    lerp_t, lerp_o, copy_t, copy_o = list(t_params), list(o_params), [], []
    for t, o in zip(t_bufs, o_bufs):
        if buffers and t.is_floating_point():
            lerp_t.append(t)
            lerp_o.append(o)
        else:
            copy_t.append(t)
            copy_o.append(o)
    if not foreach:
        for t, o in zip(lerp_t, lerp_o):
            t.lerp_(o, 1.0 - tau)
        for t, o in zip(copy_t, copy_o):
            t.copy_(o)
        return
    for idx in _same_kind(lerp_t, lerp_o):
        torch._foreach_lerp_([lerp_t[i] for i in idx], [lerp_o[i] for i in idx], 1.0 - tau)
    if copy_t and hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(copy_t, copy_o)
    else:  # torch < 2.2 has no multi-tensor copy
        for t, o in zip(copy_t, copy_o):
            t.copy_(o)


def _same_kind(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[list[int]]:
    """Indices of ``a``/``b`` grouped so that each group shares one device and dtype pair (multi-tensor ops)."""
    groups: dict[tuple, list[int]] = {}
    for i, (x, y) in enumerate(zip(a, b)):
        groups.setdefault((x.device, x.dtype, y.device, y.dtype), []).append(i)
    return list(groups.values())


def tau_schedule(step: int, total: int, base: float) -> float:
    """Target decay rate at step ``k`` of ``K``: ``1 − (1 − τ_base)(cos(πk/K) + 1)/2`` (paper Sec. 3.3).

    Starts at ``base`` (k = 0) and increases to 1 at k = K.
    """
    if total <= 0:
        return 1.0
    k = min(max(step, 0), total)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total) + 1.0) / 2.0


@torch.no_grad()
def projection_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of the l2-normalised ``z`` (``B × D``).

    The collapse signal of SimSiam (Chen & He 2021, Fig. 2): ``1/√D`` for well-spread outputs, 0 when
    every image maps to the same point.
    """
    zn = F.normalize(z.detach().float(), dim=-1)
    return float(zn.std(dim=0).mean())


class BYOL(nn.Module):
    """Online (backbone, projector, predictor) and target (backbone, projector) networks.

    The target is a deep copy made at construction, so both start from the same weights (paper Algorithm 1);
    its parameters have ``requires_grad=False``. Its BN layers use batch statistics in the forward pass (as
    the online network does) but ``momentum = 0``, so their running statistics change only through
    ``update_ema`` (see ``update_ema``'s ``buffers``).
    """

    def __init__(self, backbone: nn.Module, projector: MLPSpec, predictor: MLPSpec | None) -> None:
        super().__init__()
        self.projector_spec = projector
        self.predictor_spec = predictor
        self.backbone = backbone
        self.projector = build_mlp(projector)
        self.predictor = build_mlp(predictor) if predictor is not None else nn.Identity()
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)
        for m in self.target_modules():
            for mod in m.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.momentum = 0.0  # running stats move only by EMA

    def online_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.backbone, self.projector

    def target_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.target_backbone, self.target_projector

    def target_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.target_modules() for p in m.parameters()]

    def online_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, z)``: prediction ``B × D`` and projection ``B × D`` of the online network."""
        z = self.projector(self.backbone(x))
        return self.predictor(z), z

    @torch.no_grad()
    def target_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Target projection ``B × D`` (no graph is built)."""
        return self.target_projector(self.target_backbone(x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Symmetrised BYOL loss of two views ``B × 3 × H × W`` plus the projections for diagnostics.

        Each view is a separate forward pass (its own BN batch statistics), as in the paper's implementation.
        """
        q1, z1 = self.online_forward(x1)
        q2, z2 = self.online_forward(x2)
        t1, t2 = self.target_forward(x1), self.target_forward(x2)
        loss = symmetric_byol_loss(q1, q2, t1, t2)
        return {"loss": loss, "z_online": z1.detach(), "z_target": t1}

    @torch.no_grad()
    def update_target(self, tau: float, buffers: bool = True) -> None:
        """EMA step of the target towards the online backbone and projector (paper Eq. 1)."""
        update_ema(self.backbone, self.target_backbone, tau, buffers)
        update_ema(self.projector, self.target_projector, tau, buffers)
