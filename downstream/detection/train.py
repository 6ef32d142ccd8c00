"""One fine-tuning trial: detectron2's ``DefaultTrainer`` with our strict weight loading and evaluator.

``run_trials`` starts each trial through detectron2's ``launch`` (one process per GPU with several GPUs,
in-process otherwise); rank 0 writes the trial's metrics to ``<output_dir>/result.json``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, hooks, launch
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import JSONWriter

import downstream.detection.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm in spawned workers)
from downstream.detection.backbone import ADAPTER_BUILDER_NAMES, AdapterError, register_backbones
from downstream.detection.evaluation import flatten_bbox, make_evaluator, register_split
from downstream.detection.weights import load_backbone_strict

__all__ = ["Trainer", "trial_main", "run_trial"]


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` without intermediate checkpoints or tensorboard, with pycocotools AP."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> Any:
        return make_evaluator(dataset_name, Path(cfg.OUTPUT_DIR) / "inference")

    def build_writers(self) -> list[Any]:
        return [JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]

    def build_hooks(self) -> list[Any]:
        return [h for h in super().build_hooks() if not isinstance(h, hooks.PeriodicCheckpointer)]


def trial_main(cfg_yaml: str, splits: dict[str, tuple[str, str]]) -> None:
    """Process entry point (picklable arguments): register the splits, build, load, train, evaluate."""
    cfg = CfgNode.load_cfg(cfg_yaml)
    for name, (json_path, image_dir) in splits.items():
        registered = register_split(json_path, image_dir)
        if registered != name:
            raise RuntimeError(f"split registered as '{registered}', config names '{name}'")
    seed_all_rng(cfg.SEED + comm.get_rank())
    register_backbones()  # the adapter builders, in this (possibly spawned) process
    trainer = Trainer(cfg)
    n_loaded = _load_backbone(trainer.model, cfg)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    results = trainer._last_eval_results if hasattr(trainer, "_last_eval_results") else {}
    if comm.is_main_process():
        timer = trainer.storage.history("time") if "time" in trainer.storage.histories() else None
        record = {
            "metrics": flatten_bbox(results),
            "train_seconds": train_s,
            "s_per_iter": timer.median(len(timer.values())) if timer else None,
            "backbone_route": route_of(cfg),
            "backbone_tensors_loaded": n_loaded,
            "peak_cuda_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        }
        tmp = Path(cfg.OUTPUT_DIR) / "result.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(Path(cfg.OUTPUT_DIR) / "result.json")


def route_of(cfg: CfgNode) -> str:
    """``"adapter"`` when the config builds our backbone adapter, else ``"pkl"``."""
    return "adapter" if cfg.MODEL.BACKBONE.NAME in ADAPTER_BUILDER_NAMES else "pkl"


def _load_backbone(model: torch.nn.Module, cfg: CfgNode) -> int:
    """The backbone tensors loaded: strictly from the ``.pkl``, or as the adapter loaded them at build time."""
    if route_of(cfg) == "pkl":
        return load_backbone_strict(model, cfg.MODEL.WEIGHTS)
    bottom_up = getattr(model, "module", model).backbone.bottom_up
    if not bottom_up.tensors_loaded:
        raise AdapterError(
            f"the adapter loaded no artifact tensors (MODEL.BYOL_BENCH.ARTIFACT: {cfg.MODEL.BYOL_BENCH.ARTIFACT!r})"
        )
    return bottom_up.tensors_loaded


def run_trial(cfg: CfgNode, splits: dict[str, tuple[str, str]], num_gpus: int) -> dict[str, Any]:
    """Run one trial (``num_gpus`` processes, or in-process on CPU/1 GPU) and return rank 0's record."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.dump())
    result = out / "result.json"
    result.unlink(missing_ok=True)
    launch(trial_main, max(1, num_gpus), dist_url="auto", args=(cfg.dump(), splits))
    if not result.is_file():
        raise RuntimeError(f"detection trial wrote no result ({result})")
    return json.loads(result.read_text())
