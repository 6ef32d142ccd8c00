"""What a pretraining run directory holds on disk: the checkpoint format, the metrics log, the run config.

Export reads a run through this module and ``pretrain.model`` alone; the training loop (``pretrain.train``)
writes through it.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pretrain.byol import BYOL
from pretrain.config import PretrainConfig, load_pretrain_config
from zoo.io import atomic_write_text

__all__ = [
    "CHECKPOINT",
    "ARTIFACT",
    "MetricsLog",
    "checkpoint_state",
    "load_checkpoint_into",
    "load_run_config",
    "read_metrics",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT = Path("checkpoints") / "last.pt"
ARTIFACT = "artifact"
log = logging.getLogger("pretrain")


def load_run_config(run_dir: str | Path) -> PretrainConfig:
    """The config a run directory was trained with (``config.yaml``)."""
    return load_pretrain_config(Path(run_dir) / "config.yaml", [])


# --------------------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------------------


class MetricsLog:
    """Append-only JSON lines (rank 0), truncated on resume to the checkpointed step."""

    def __init__(self, path: Path, enabled: bool, tensorboard_dir: Path | None) -> None:
        self.path, self.enabled = path, enabled
        self.tb = None
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:
                log.warning("run.tensorboard is true but tensorboard is not installed; logging to JSON only")

    def truncate(self, step: int) -> None:
        """Keep the records up to ``step`` (all of them removed with ``step = -1``)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numbers to tensorboard when enabled)."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        """Close the tensorboard writer, if any."""
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``metrics.jsonl`` in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


# --------------------------------------------------------------------------------------------------
# checkpoints/last.pt
# --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch, numpy, python, CUDA), in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(_to_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(obj: Any) -> Any:
    return tuple(_to_tuple(v) for v in obj) if isinstance(obj, list | tuple) else obj


def checkpoint_state(model: BYOL, opt: torch.optim.Optimizer, scaler: Any, step: int, epoch: int) -> dict[str, Any]:
    """The checkpoint dict: online + target networks, optimiser, grad scaler, step, epoch, RNG states."""
    return {
        "online": {
            "backbone": model.backbone.state_dict(),
            "projector": model.projector.state_dict(),
            "predictor": model.predictor.state_dict(),
        },
        "target": {"backbone": model.target_backbone.state_dict(), "projector": model.target_projector.state_dict()},
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "step": step,
        "epoch": epoch,
        "rng": rng_state(),
    }


def load_checkpoint_into(model: BYOL, ckpt: dict[str, Any]) -> None:
    """Restore online and target networks of ``model`` from a ``last.pt`` dict."""
    model.backbone.load_state_dict(ckpt["online"]["backbone"])
    model.projector.load_state_dict(ckpt["online"]["projector"])
    model.predictor.load_state_dict(ckpt["online"]["predictor"])
    model.target_backbone.load_state_dict(ckpt["target"]["backbone"])
    model.target_projector.load_state_dict(ckpt["target"]["projector"])
