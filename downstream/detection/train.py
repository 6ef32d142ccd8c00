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
    """``DefaultTrainer`` without intermediate checkpoints or tensorboard, with pycocotools AP.

    Every evaluation (each ``TEST.EVAL_PERIOD`` iterations and the final one) appends a point to ``curve``:
    the iteration, the training wall and process-CPU seconds spent so far (evaluation excluded) and the
    COCO box metrics, so that one run gives AP against iterations and against seconds.

    An evaluation draws from torch's global RNG (its DataLoader iterator's base seed), which the RPN and ROI
    samplers also use, so the evaluation period is part of the protocol: the same preset and overrides give
    the same AP, but ``eval_period`` 300 and 0 do not give bit-identical models. It is in the preset
    (``TEST.EVAL_PERIOD``) or, when overridden, in the job's identity.
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        self.curve: list[dict[str, float]] = []
        self._eval_wall = self._eval_cpu = 0.0
        self._start_wall = self._start_cpu = None

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> Any:
        return make_evaluator(dataset_name, Path(cfg.OUTPUT_DIR) / "inference")

    def build_writers(self) -> list[Any]:
        return [JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]

    def build_hooks(self) -> list[Any]:
        out = []
        for h in super().build_hooks():
            if isinstance(h, hooks.PeriodicCheckpointer):
                continue
            if isinstance(h, hooks.EvalHook):  # the same schedule, through our recording function
                h = hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self._evaluate_and_record)
            out.append(h)
        return out

    def train(self) -> Any:
        self._start_wall, self._start_cpu = time.perf_counter(), time.process_time()
        return super().train()

    def _evaluate_and_record(self) -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        results = self.test(self.cfg, self.model)
        self._last_eval_results = results
        if comm.is_main_process() and self._start_wall is not None:
            point = {
                "iter": min(self.iter + 1, self.max_iter),  # after training, ``iter`` is already max_iter
                "train_seconds": wall - self._start_wall - self._eval_wall,
                "train_cpu_seconds": cpu - self._start_cpu - self._eval_cpu,
                **flatten_bbox(results),
            }
            self.curve.append(point)
        self._eval_wall += time.perf_counter() - wall
        self._eval_cpu += time.process_time() - cpu
        return results


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
            "train_seconds": train_s,  # wall time of trainer.train(), periodic evaluations included
            "train_cpu_seconds": trainer.curve[-1]["train_cpu_seconds"] if trainer.curve else None,
            "eval_seconds": trainer._eval_wall,
            "curve": trainer.curve,  # AP at each evaluation (TEST.EVAL_PERIOD) and at the end
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
