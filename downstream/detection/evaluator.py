"""The ``detection`` evaluator: Faster R-CNN fine-tuning on a COCO-format dataset, mean ± std over trials."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from downstream.context import EvalContext
from downstream.detection.config import DetectionConfig, load_preset
from downstream.detection.evaluation import register_split
from downstream.detection.modeling import build_d2_config
from downstream.detection.rescore import GROUND_TRUTH, PREDICTIONS, aggregate_trials
from downstream.detection.train import run_trial
from downstream.detection.weights import backbone_weights, choose_route
from downstream.registry import EvaluatorError, register_evaluator
from zoo.datasets import DetectionSplit

__all__ = ["detection", "aggregate_trials", "PREDICTIONS", "GROUND_TRUTH"]

# the ground truth is copied beside each record up to this size (digits-det val: ~40 KB); COCO val2017's
# 25 MB annotations are recorded by path and sha256 only
MAX_GT_COPY_BYTES = 8 << 20


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
    units={"AP*": "AP points"},  # AP AP50 AP75 APs APm APl AP-<class> and their _std
    # COCO box AP (rescore.coco_box_metrics), each with its std over trials (rescore.aggregate_trials)
    metrics=lambda cfg: (
        [f"{m}{s}" for m in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP-*") for s in ("", "_std")] + ["trials"]
    ),
)
def detection(ctx: EvalContext, cfg: DetectionConfig) -> dict[str, float]:
    """Fine-tune Faster R-CNN from the artifact's backbone; COCO box AP (mean/std over trials)."""
    meta = ctx.artifact.meta
    preset = load_preset(cfg.preset, dataset=ctx.dataset)
    route = choose_route(meta.architecture, cfg.route or preset.route)  # .pkl or adapter, errors before any work
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
    weights = backbone_weights(route, ctx.artifact, work)  # the .pkl written there, or the artifact directory
    num_gpus = _num_gpus(ctx, cfg)
    device = "cuda" if num_gpus > 0 else "cpu"

    per_trial, records = [], []
    for t in range(trials):
        d2cfg = build_d2_config(
            preset,
            cfg,
            backbone=weights,
            mean=tuple(meta.mean),
            std=tuple(meta.std),
            num_classes=train_split.num_classes,
            train_name=train_name,
            test_name=test_name,
            output_dir=str(work / f"trial{t}"),
            seed=ctx.seed + t,
            device=device,
            num_gpus=num_gpus,
        )
        rec = run_trial(d2cfg, splits, num_gpus)
        per_trial.append(rec["metrics"])
        records.append({"trial": t, "seed": ctx.seed + t, **rec})
        # the detections this trial's AP was computed from, kept beside the record (re-score: rescore.py)
        ctx.keep(
            f"trial{t}/{PREDICTIONS}",
            work / f"trial{t}" / "inference" / PREDICTIONS,
            written_by="detectron2 COCOEvaluator (final-iteration model)",
            trial=t,
            seed=ctx.seed + t,
            split=cfg.test_split,
            metrics=rec["metrics"],
        )
    (work / "trials.json").write_text(json.dumps(records, indent=1))
    gt = Path(test_split.json_path)
    ctx.keep(
        GROUND_TRUTH,
        gt,
        copy=gt.stat().st_size <= MAX_GT_COPY_BYTES,
        written_by=f"zoo.datasets '{ctx.dataset}' split '{cfg.test_split}'",
        split=cfg.test_split,
        recipe=dict(getattr(test_split, "recipe", {}) or {}),
    )
    ctx.selection.update({"preset": preset.name, "trials": trials, "split": cfg.test_split, "device": device})
    ctx.selection["backbone_route"] = route  # how the weights reached detectron2 (weights.choose_route)
    # AP against iterations and training seconds, one list per trial (TEST.EVAL_PERIOD; the last point is the
    # final model, whose predictions are kept), and what the training cost
    ctx.selection["curves"] = [r.get("curve", []) for r in records]
    ctx.selection["train_cpu_seconds"] = [r.get("train_cpu_seconds") for r in records]
    ctx.selection["s_per_iter"] = [r.get("s_per_iter") for r in records]
    return aggregate_trials(per_trial)
