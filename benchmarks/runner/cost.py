"""GPU-hour estimates for a plan, from per-step costs a suite states (``cost:``) — small pure functions.

The estimate is arithmetic on stated throughputs, not a measurement: a BYOL job costs
``epochs × steps_per_epoch × batch / images_per_s`` GPU-seconds (incomplete last batches are dropped, as
the trainer does), a detectron2 job ``iterations × s_per_iter × gpus``. The suite names the GPU and the
source of each figure next to it, so a reader can check the inputs of every number the dry run prints.

Pretraining also states the host memory it needs: unless it streams from files (``data.stream``), the
trainer keeps the training split in memory as uint8 ``N × 3 × S × S`` in every process, so this number grows
with ``torchrun``'s process count; a streaming job holds only its prefetched batches (counted as 0 here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .plan import Job, Plan
from .suite import CostSpec

__all__ = [
    "JobEstimate",
    "pretrain_gpu_hours",
    "detection_gpu_hours",
    "in_memory_gib",
    "estimate_job",
    "estimate_plan",
]


def pretrain_gpu_hours(num_images: int, epochs: int, batch_size: int, images_per_s: float) -> float:
    """GPU-hours of BYOL pretraining: ``epochs × ⌊num_images / batch⌋ × batch`` images at ``images_per_s``.

    ``images_per_s`` is per GPU, so the result is the same whether the steps run on one GPU or on many
    (perfect scaling assumed; the wall time is this divided by the GPU count).
    """
    if num_images < 1 or epochs < 1 or batch_size < 1 or images_per_s <= 0:
        raise ValueError("pretrain_gpu_hours: sizes must be >= 1 and images_per_s > 0")
    steps_per_epoch = num_images // batch_size
    return epochs * steps_per_epoch * batch_size / images_per_s / 3600.0


def detection_gpu_hours(iterations: int, s_per_iter: float, gpus: int) -> float:
    """GPU-hours of a detectron2 schedule measured at ``s_per_iter`` seconds per iteration on ``gpus`` GPUs."""
    if iterations < 0 or s_per_iter <= 0 or gpus < 1:
        raise ValueError("detection_gpu_hours: iterations >= 0, s_per_iter > 0 and gpus >= 1 required")
    return iterations * s_per_iter * gpus / 3600.0


def in_memory_gib(num_images: int, image_size: int) -> float:
    """GiB of one process's in-memory uint8 training split (``N × 3 × S × S`` bytes)."""
    return num_images * 3 * image_size * image_size / 2**30


@dataclass(frozen=True)
class JobEstimate:
    job_id: str
    gpu_hours: float | None  # None: the suite states no cost for this kind of job
    host_gib_per_process: float | None = None  # pretraining only
    basis: str = ""  # the arithmetic, for the plan's reader


_ZOO_SCHEDULES = {"_1x": 90000, "_2x": 180000, "_3x": 270000}  # detectron2 MODEL_ZOO.md, batch 16


def _detection_iterations(spec: dict[str, Any]) -> tuple[int | None, int]:
    """(iterations, trials) of a detection eval job: the override, else the preset's schedule."""
    cfg = spec.get("config") or {}
    iters, trials = cfg.get("max_iter"), cfg.get("trials")
    if iters is None or trials is None:
        try:
            from downstream.detection.config import load_preset

            preset = load_preset(cfg.get("preset"), dataset=spec.get("dataset"))  # None: the dataset's default
        except Exception:  # noqa: BLE001 - detection stage missing: no estimate, the plan says so
            return None, int(trials or 1)
        trials = trials if trials is not None else preset.trials
        if iters is None:
            iters = preset.d2.get("SOLVER.MAX_ITER")
        if iters is None:  # the model-zoo config's own schedule: detectron2's 1x = 90k, 3x = 270k iterations
            iters = next((n for tag, n in _ZOO_SCHEDULES.items() if tag in preset.base), None)
    return (int(iters) if iters is not None else None), int(trials or 1)


def estimate_job(job: Job, cost: CostSpec) -> JobEstimate:
    """The GPU-hours of one job under ``cost`` (None when the suite states no figure for its kind)."""
    if job.kind == "pretrain":
        cfg = job.spec.get("config") or {}
        data, optim, run = cfg.get("data", {}), cfg.get("optim", {}), cfg.get("run", {})
        n = cost.train_images
        if n is not None and data.get("limit"):
            n = min(n, int(data["limit"]))
        host = in_memory_gib(n, int(data.get("image_size", 0))) if n else None
        if data.get("stream"):  # read from the files every step: no decoded split in memory
            host = 0.0
        if n is None or cost.pretrain_images_per_s is None or not cfg:
            return JobEstimate(job.id, None, host, "no cost.pretrain_images_per_s / cost.train_images stated")
        epochs, bs = int(run.get("epochs", 1)), int(optim.get("batch_size", 1))
        hours = pretrain_gpu_hours(n, epochs, bs, cost.pretrain_images_per_s)
        basis = f"{epochs} ep × {n // bs} steps × {bs} img / {cost.pretrain_images_per_s:g} img/s"
        return JobEstimate(job.id, hours, host, basis)
    if job.kind == "eval":
        if job.spec.get("evaluator") == "detection" and cost.detection_s_per_iter is not None:
            iters, trials = _detection_iterations(job.spec)
            if iters is None:
                return JobEstimate(job.id, None, None, "detection schedule unknown (stage not importable?)")
            hours = trials * detection_gpu_hours(iters, cost.detection_s_per_iter, cost.detection_gpus)
            basis = f"{trials} × {iters} it × {cost.detection_s_per_iter:g} s × {cost.detection_gpus} GPUs"
            return JobEstimate(job.id, hours, None, basis)
        if job.group in cost.eval_gpu_hours:
            return JobEstimate(job.id, cost.eval_gpu_hours[job.group], None, f"stated for '{job.group}'")
        return JobEstimate(job.id, None, None, f"no cost stated for '{job.group}'")
    if job.kind == "random-init":
        return JobEstimate(job.id, 0.0, None, "no training")
    return JobEstimate(job.id, None, None, f"no cost stated for '{job.kind}'")


def estimate_plan(plan: Plan, cost: CostSpec | None) -> dict[str, JobEstimate]:
    """One estimate per unique job of ``plan`` (empty when the suite states no costs)."""
    if cost is None:
        return {}
    return {j.id: estimate_job(j, cost) for j in plan.jobs}
