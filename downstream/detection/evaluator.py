"""The ``detection`` evaluator: Faster R-CNN fine-tuning on a COCO-format dataset, mean ± std over trials."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from downstream.context import EvalContext
from downstream.detection.config import DetectionConfig, load_preset
from downstream.detection.evaluation import register_split
from downstream.detection.modeling import build_d2_config
from downstream.detection.train import run_trial
from downstream.detection.weights import check_architecture, export_pkl
from downstream.registry import EvaluatorError, register_evaluator
from zoo.datasets import DetectionSplit

__all__ = ["detection", "aggregate_trials"]


def aggregate_trials(per_trial: list[dict[str, float]]) -> dict[str, float]:
    """Mean over trials under each metric name, ``<name>_std`` (sample std, 0 for one trial), ``trials``.

    A metric missing from some trial (e.g. a size range with no detections) is averaged where present.
    """
    out: dict[str, float] = {}
    keys = sorted({k for m in per_trial for k in m})
    for k in keys:
        vals = [m[k] for m in per_trial if k in m]
        out[k] = statistics.fmean(vals)
        out[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    out["trials"] = float(len(per_trial))
    return out


def _num_gpus(ctx: EvalContext, cfg: DetectionConfig) -> int:
    if cfg.num_gpus is not None:
        if cfg.num_gpus > 0 and not torch.cuda.is_available():
            raise EvaluatorError(f"num_gpus={cfg.num_gpus} but no CUDA device is available")
        return cfg.num_gpus
    return torch.cuda.device_count() if ctx.device.type == "cuda" else 0


@register_evaluator(
    "detection",
    config=DetectionConfig,
    task="detection",
    frozen=False,
    selection_rule="fixed preset schedule, final-iteration model; test split evaluated once per trial; "
    "mean and std over trials (seeds seed..seed+trials-1)",
)
def detection(ctx: EvalContext, cfg: DetectionConfig) -> dict[str, float]:
    """Fine-tune Faster R-CNN from the artifact's backbone; COCO box AP (mean/std over trials)."""
    meta = ctx.artifact.meta
    resnet = check_architecture(meta.architecture)
    preset = load_preset(cfg.preset)
    trials = cfg.trials or preset.trials
    train_split, test_split = ctx.load_split(cfg.train_split), ctx.load_split(cfg.test_split)
    if not isinstance(train_split, DetectionSplit) or not isinstance(test_split, DetectionSplit):
        raise EvaluatorError(f"dataset '{ctx.dataset}' is not a detection dataset")
    splits = {
        register_split(s.json_path, s.image_dir): (str(s.json_path), str(s.image_dir))
        for s in (train_split, test_split)
    }
    train_name, test_name = list(splits)
    work = Path(ctx.work_dir) / "detection"
    work.mkdir(parents=True, exist_ok=True)
    weights = export_pkl(ctx.artifact.model, work / "backbone_d2.pkl", sha256=ctx.artifact.sha256)
    num_gpus = _num_gpus(ctx, cfg)
    device = "cuda" if num_gpus > 0 else "cpu"

    per_trial, records = [], []
    for t in range(trials):
        d2cfg = build_d2_config(
            preset,
            cfg,
            resnet=resnet,
            mean=tuple(meta.mean),
            std=tuple(meta.std),
            num_classes=train_split.num_classes,
            train_name=train_name,
            test_name=test_name,
            weights=str(weights),
            output_dir=str(work / f"trial{t}"),
            seed=ctx.seed + t,
            device=device,
            num_gpus=num_gpus,
        )
        rec = run_trial(d2cfg, splits, num_gpus)
        per_trial.append(rec["metrics"])
        records.append({"trial": t, "seed": ctx.seed + t, **rec})
    (work / "trials.json").write_text(json.dumps(records, indent=1))
    ctx.selection.update({"preset": preset.name, "trials": trials, "split": cfg.test_split, "device": device})
    return aggregate_trials(per_trial)
