"""``evaluate(artifact, evaluator, dataset)``: run one evaluator and produce one metric record.

This is the one place where frozen evaluators get their backbone in eval mode under ``torch.no_grad()``
with ``requires_grad`` off, and where "frozen" is checked afterwards (parameters and BN buffers
bit-identical). The record it returns (and writes atomically to ``out``) is::

    {"schema_version": 1, "evaluator": str, "metrics": {str: float},
     "metric_units": {metric: "fraction" | "AP points"},   # metrics that have a unit (registry.UNITS)
     "artifact": {"path", "sha256", "meta": {...}},
     "dataset": {"name", "options": {...}, "splits": {split: size}, "recipe": {...}},
     "config": {...resolved evaluator config}, "seed": int,
     "selection_rule": str, "selection": {...what was chosen, on which split},
     "evidence": {name: {"file", "sha256", "bytes", "origin"}}   # only when the evaluator kept files
     "code_version": {...}, "machine": {...}, "wall_time_s": float, "created": iso8601}

The file at ``out`` also carries ``record_sha256``, a checksum of the rest of it (``zoo.records``).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from downstream.artifacts import resolve_artifact
from downstream.context import EvalContext
from downstream.evidence import keep_evidence
from downstream.registry import EvaluatorError, EvaluatorSpec, get_evaluator
from zoo.config import load_config, to_dict
from zoo.datasets import DATASETS, DatasetError, DatasetOptions
from zoo.io import code_version, default_cache_dir, machine_info, utc_now
from zoo.records import write_record

__all__ = ["evaluate", "FrozenCheckError", "SCHEMA_VERSION", "snapshot_state", "assert_unchanged"]

SCHEMA_VERSION = 1


class FrozenCheckError(RuntimeError):
    """A ``frozen`` evaluator changed the backbone's parameters or BN buffers."""


def snapshot_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer (BN running mean/var, num_batches_tracked) of ``model``."""
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor], who: str = "evaluator") -> None:
    """Raise ``FrozenCheckError`` naming the tensors of ``model`` that differ from the snapshot ``before``."""
    after = model.state_dict()
    changed = sorted(set(before) ^ set(after))
    changed += [k for k in before if k in after and not torch.equal(before[k], after[k].detach())]
    if changed:
        shown = ", ".join(changed[:8]) + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else "")
        raise FrozenCheckError(
            f"{who} is registered frozen=True but changed {len(changed)} backbone tensor(s): {shown}. "
            "A frozen evaluator must not train the backbone nor run it in train mode (BN statistics)."
        )


def _split_size(split: Any) -> int | None:
    if hasattr(split, "__len__"):
        return len(split)
    json_path = getattr(split, "json_path", None)
    if json_path is not None:
        import json

        return len(json.loads(Path(json_path).read_text())["images"])
    return None


def _clean_metrics(metrics: Any, who: str) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise EvaluatorError(f"{who} must return a dict[str, float], got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise EvaluatorError(f"{who} returned a non-string metric key {k!r}")
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating | torch.Tensor):
            raise EvaluatorError(f"{who}: metric '{k}' is {type(v).__name__}, expected a number")
        out[k] = float(v)
        if not math.isfinite(out[k]):
            raise EvaluatorError(f"{who}: metric '{k}' is not finite ({out[k]})")
    return out


def _run(spec: EvaluatorSpec, ctx: EvalContext, cfg: Any) -> dict[str, float]:
    """The evaluator call: for frozen evaluators, eval mode + no_grad + requires_grad off + the frozen check."""
    if not spec.frozen:
        return spec.fn(ctx, cfg)
    model = ctx.artifact.model
    model.eval()
    model.requires_grad_(False)
    before = snapshot_state(model)
    with torch.no_grad():
        metrics = spec.fn(ctx, cfg)
    assert_unchanged(model, before, who=f"evaluator '{spec.name}'")
    return metrics


def evaluate(
    artifact: str | Path,
    evaluator: str,
    dataset: str,
    *,
    dataset_options: DatasetOptions | None = None,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str | None = None,
    work_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``artifact`` (a directory or ``"raw-pixels"``) with ``evaluator`` on ``dataset``.

    Returns the metric record (see the module docstring) and writes it atomically to ``out`` when given;
    files the evaluator keeps (``ctx.keep``: detection predictions) are copied beside it, into
    ``<out stem>.evidence/``, and listed with their sha256 under ``evidence`` (``downstream.evidence``).
    Unknown evaluators, a dataset of the wrong task and bad config keys raise before anything runs.
    """
    start = time.perf_counter()
    spec = get_evaluator(evaluator)
    cfg = load_config(spec.config, config_path, overrides)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset '{dataset}' (known: {', '.join(sorted(DATASETS))})")
    if DATASETS[dataset].task != spec.task:
        raise EvaluatorError(
            f"evaluator '{evaluator}' is for {spec.task} datasets; '{dataset}' is a {DATASETS[dataset].task} dataset"
        )
    opts = dataset_options or DatasetOptions()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    art = resolve_artifact(artifact, image_size=opts.image_size, device=dev)
    torch.manual_seed(seed)

    with tempfile.TemporaryDirectory(prefix=f"byol-bench-{evaluator}-") as scratch:
        wd = Path(work_dir) if work_dir is not None else Path(scratch)
        wd.mkdir(parents=True, exist_ok=True)
        ctx = EvalContext(
            artifact=art,
            dataset=dataset,
            dataset_options=opts,
            seed=seed,
            device=dev,
            work_dir=wd,
            cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        )
        metrics = _clean_metrics(_run(spec, ctx, cfg), f"evaluator '{evaluator}'")
        splits = dict(ctx._splits)
        # before the work folder goes: the files behind the metrics go beside the record (or stay in a
        # work folder the caller chose); with neither, only their hashes are recorded
        evidence = keep_evidence(ctx._evidence, out)
        if out is None and work_dir is not None:
            evidence = {k: {**v, "file": v["origin"]["path"]} for k, v in evidence.items()}

    first = next(iter(splits.values()), None)
    recipe = dict(getattr(first, "recipe", {}) or {})
    used_opts = dataclasses.asdict(opts)
    if first is not None and getattr(first, "image_size", None) is not None:
        used_opts["image_size"] = first.image_size
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "evaluator": evaluator,
        "metrics": metrics,
        "metric_units": {k: u for k in metrics if (u := spec.unit(k)) is not None},
        "artifact": {"path": str(art.path), "sha256": art.sha256, "meta": art.meta.to_dict()},
        "dataset": {
            "name": dataset,
            "options": used_opts,
            "splits": {name: _split_size(s) for name, s in splits.items()},
            "recipe": recipe,
        },
        "config": to_dict(cfg),
        "seed": seed,
        "selection_rule": spec.selection_rule,
        "selection": dict(ctx.selection),
        **({"evidence": evidence} if evidence else {}),
        "code_version": code_version(),
        "machine": {**machine_info(), "device": str(dev)},
        "wall_time_s": round(time.perf_counter() - start, 3),
        "created": utc_now(),
    }
    if out is not None:
        write_record(out, record)  # sealed with a checksum of its content (zoo.records)
    return record
