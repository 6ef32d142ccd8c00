"""Generic MLP heads (projector / predictor shapes) that both stages can rebuild from a spec.

BYOL's projector and predictor are ``Linear → BN → ReLU → Linear`` (Grill et al. 2020, Sec. 3.3). An
artifact may carry such heads (``heads.safetensors`` + their specs in ``meta.extra["heads"]``) so that
analysis can probe their outputs without knowing which method trained them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

__all__ = ["MLPSpec", "build_mlp"]


@dataclass(frozen=True)
class MLPSpec:
    """``num_layers`` linear layers; every hidden one is followed by BN (optional) and ReLU."""

    in_dim: int
    hidden_dim: int
    out_dim: int
    num_layers: int = 2
    batch_norm: bool = True

    def __post_init__(self) -> None:
        if min(self.in_dim, self.hidden_dim, self.out_dim) < 1 or self.num_layers < 1:
            raise ValueError(f"MLP dims and num_layers must be positive, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_mlp(spec: MLPSpec) -> nn.Sequential:
    """The MLP described by ``spec`` (hidden layers: Linear → BN → ReLU; last: Linear)."""
    layers: list[nn.Module] = []
    dim = spec.in_dim
    for _ in range(spec.num_layers - 1):
        layers.append(nn.Linear(dim, spec.hidden_dim, bias=not spec.batch_norm))
        if spec.batch_norm:
            layers.append(nn.BatchNorm1d(spec.hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = spec.hidden_dim
    layers.append(nn.Linear(dim, spec.out_dim))
    return nn.Sequential(*layers)
