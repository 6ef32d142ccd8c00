"""Optimisers and the learning-rate schedule of BYOL (paper Sec. 3.3 and Appendix C.1).

``LARS`` (You et al. 2017, arXiv 1708.03888) as BYOL uses it: for parameters in a group with
``lars_exclude`` (biases and BatchNorm) there is neither weight decay nor trust-ratio adaptation. Written
here (about 40 lines, tested) because torch has no LARS and ``lightly`` is only a benchmark dependency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["LARS", "param_groups", "build_optimizer", "lr_at"]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio ``η‖w‖/‖g + λw‖`` (You et al. 2017, Algorithm 1).

    Update per parameter ``w`` (gradient ``g``, weight decay ``λ``, momentum ``m``)::

        u = g + λ w                              (no λ w when the group has lars_exclude)
        u ← u · t,  t = η‖w‖/‖u‖   if ‖w‖ > 0 and ‖u‖ > 0 and not lars_exclude
        v ← m v + u;  w ← w − lr · v

    ``clip_lr=True`` replaces ``t`` by ``min(t / lr, 1)``, so a layer's step size is ``min(η‖w‖/‖u‖, lr)``
    instead of ``lr · η‖w‖/‖u‖``: the trust ratio becomes the layer's LR, capped at the scheduled LR. This is
    solo-learn's ``clip_lr`` (vturrisi/solo-learn ``solo/utils/lars.py`` lines 145-147 at commit 9187ea39,
    ``lars_lr = min(lars_lr / group["lr"], 1)``), which its CIFAR and ImageNet-100 BYOL recipes turn on
    (``scripts/pretrain/cifar/byol.yaml`` and ``scripts/pretrain/imagenet-100/byol.yaml``, line 38). ``lr`` is
    the group's LR at this step (after warm-up and decay). solo-learn's ``t`` divides by ``‖g‖ + λ‖w‖``, ours
    by ``‖g + λw‖`` (You et al.'s form, kept for both modes).

    ``foreach=True`` (default) applies each line to a whole group at once with torch's multi-tensor
    ``_foreach_*`` ops (fewer passes over memory, no per-tensor Python); ``foreach=False`` is the plain
    per-tensor loop, kept as the readable reference the multi-tensor path is tested against.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 1e-3,
        foreach: bool = True,
        clip_lr: bool = False,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError("LARS: lr, momentum and weight_decay must be >= 0 and eta > 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "lars_exclude": False,
            "clip_lr": clip_lr,
        }
        super().__init__(params, defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if self.foreach:
                for same in _by_device_dtype(params):
                    self._step_foreach(group, same)
            else:
                self._step_loop(group, params)
        return loss

    def _step_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            u = p.grad
            if not group["lars_exclude"]:
                if group["weight_decay"]:
                    u = u.add(p, alpha=group["weight_decay"])
                w_norm = torch.linalg.vector_norm(p)
                u_norm = torch.linalg.vector_norm(u)
                u = u.mul(_trust(w_norm, u_norm, group))
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.clone(u).detach()
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(u)
            p.add_(state["momentum_buffer"], alpha=-group["lr"])

    def _step_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        updates = grads  # aliases the gradients until a new tensor is made: never modified in place
        if not group["lars_exclude"]:
            if group["weight_decay"]:
                updates = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            w_norm = torch.stack(torch._foreach_norm(params))  # one entry per tensor
            u_norm = torch.stack(torch._foreach_norm(updates))
            trust_each = list(_trust(w_norm, u_norm, group).unbind(0))
            if updates is grads:
                updates = torch._foreach_mul(updates, trust_each)
            else:
                torch._foreach_mul_(updates, trust_each)
        states = [self.state[p] for p in params]
        have = [i for i, s in enumerate(states) if "momentum_buffer" in s]
        for i in range(len(params)):
            if "momentum_buffer" not in states[i]:
                states[i]["momentum_buffer"] = torch.clone(updates[i]).detach()
        if have:
            bufs = [states[i]["momentum_buffer"] for i in have]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, [updates[i] for i in have])
        torch._foreach_add_(params, [s["momentum_buffer"] for s in states], alpha=-group["lr"])


def _trust(w_norm: torch.Tensor, u_norm: torch.Tensor, group: dict) -> torch.Tensor:
    """The factor each update is scaled by: ``η‖w‖/‖u‖``, or ``min(η‖w‖/‖u‖ / lr, 1)`` when the group clips.

    Where the ratio is undefined (``‖w‖ = 0`` or ``‖u‖ = 0``) the factor is 1, in both modes (solo-learn
    leaves such an update unscaled too).
    """
    ratio = group["eta"] * w_norm / u_norm
    if group.get("clip_lr") and group["lr"] > 0:
        ratio = torch.clamp(ratio / group["lr"], max=1.0)
    return torch.where((w_norm > 0) & (u_norm > 0), ratio, torch.ones_like(w_norm))


def _by_device_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``tensors`` split into lists of one device and dtype each (what multi-tensor kernels take), order kept."""
    out: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        out.setdefault((t.device, t.dtype), []).append(t)
    return list(out.values())


def _is_excluded(name: str, param: torch.Tensor) -> bool:
    """Biases and BatchNorm weights/biases: every 1-D parameter of a ResNet and MLP head."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    modules: dict[str, nn.Module], lr: dict[str, float], weight_decay: float, exclude_bias_bn: bool
) -> list[dict]:
    """One group per (module, excluded?) pair; ``lr_scale`` records each group's LR relative to the peak."""
    groups = []
    base = max(lr.values())
    for key, module in modules.items():
        regular, excluded = [], []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (excluded if exclude_bias_bn and _is_excluded(name, p) else regular).append(p)
        for params, excl in ((regular, False), (excluded, True)):
            if params:
                groups.append(
                    {
                        "params": params,
                        "name": f"{key}{'/no-decay' if excl else ''}",
                        "lr": lr[key],
                        "lr_scale": lr[key] / base,
                        "weight_decay": 0.0 if excl else weight_decay,
                        "lars_exclude": excl,
                    }
                )
    return groups


def build_optimizer(
    name: str,
    groups: list[dict],
    lr: float,
    momentum: float,
    weight_decay: float,
    eta: float,
    betas: tuple[float, float] = (0.9, 0.999),
    lars_clip_lr: bool = False,
) -> torch.optim.Optimizer:
    """``lars`` / ``sgd`` / ``adamw`` over ``param_groups`` output (``lars_exclude`` only matters to LARS).

    ``lars_clip_lr`` is LARS's ``clip_lr`` (each layer's step size ``min(trust, lr)``); other optimisers refuse it.
    """
    if lars_clip_lr and name != "lars":
        raise ValueError(f"lars_clip_lr=True needs the lars optimiser, got '{name}'")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, clip_lr=lars_clip_lr)
    clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(clean, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(clean, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser '{name}' (lars, sgd, adamw)")


def lr_at(step: int, total: int, warmup: int, peak: float, final_frac: float = 0.0) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``final_frac × peak`` (paper C.1)."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / (total - warmup))
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress)))
