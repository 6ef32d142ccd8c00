"""What a dry run refuses: everything the run would fail on that can be known before it starts.

``plan_problems`` returns one line per problem, each naming the job, key, file or value at fault:

- a job whose inputs could not be resolved (an unknown evaluator, a missing config file, an artifact that
  is not there): the run would fail it without running;
- an ``expected:`` entry or a ``leaderboard:`` metric naming a column no evaluation of the suite returns
  (it would be a miss, or an empty column, after hours of compute);
- a pretraining job whose in-memory training split cannot fit the executor's ``mem_gb`` (without
  ``data.stream`` the trainer keeps the split as uint8 in every process: ``cost.in_memory_gib`` × processes);
- with ``data_check``, a dataset root that does not exist or lacks the files its layout needs
  (``zoo.datasets.roots.check_root``).

Pure checks over the plan: nothing is trained, downloaded or written.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .plan import Job, Plan
from .store import Store

__all__ = ["plan_problems", "metric_problems", "memory_problems", "data_problems"]


def plan_problems(plan: Plan, store: Store | None = None, *, data_check: bool = True) -> list[str]:
    """Every problem that would make the run fail or report a wrong or empty number (empty: the plan is sound)."""
    out = []
    for job in plan.jobs:
        if job.plan_error and (store is None or store.status(job) != "done"):
            out.append(f"job {job.id} ({job.describe()}) cannot run: {job.plan_error}")
    out += metric_problems(plan)
    out += memory_problems(plan)
    if data_check:
        out += data_problems(plan)
    return out


def _declared_metrics(plan: Plan) -> dict[str, list[str] | None]:
    """Per evaluation group: the metric patterns its evaluators return (None: an evaluator declares none)."""
    from downstream.registry import EvaluatorError, get_evaluator
    from zoo.config import from_dict

    out: dict[str, list[str] | None] = {}
    for job in plan.eval_jobs():
        group = job.group or ""
        if job.plan_error or out.get(group, []) is None:
            out.setdefault(group, None)
            continue
        try:
            spec = get_evaluator(job.spec["evaluator"])
            cfg = from_dict(spec.config, job.spec.get("config") or {}, source=f"job {job.id}")
            names = spec.metric_names(cfg)
        except (EvaluatorError, ValueError, TypeError):
            names = None  # reported as the job's own problem
        out[group] = None if names is None else [*out.get(group, []), *names]  # type: ignore[list-item]
    return out


def metric_problems(plan: Plan) -> list[str]:
    """``expected:`` and ``leaderboard:`` entries naming a group or metric that no evaluation returns."""
    suite = plan.suite
    declared = _declared_metrics(plan)
    named: list[tuple[str, str]] = [(f"expected[{i}]", e.metric) for i, e in enumerate(suite.expectations())]
    lb = suite.leaderboard
    for key in ("metrics", "lower_is_better", "plot_metrics"):
        named += [(f"leaderboard.{key}[{i}]", m) for i, m in enumerate(getattr(lb, key) or [])]
    for curve_i, curve in enumerate(lb.curves):
        named += [(f"leaderboard.curves[{curve_i}].metrics[{i}]", m) for i, m in enumerate(curve.metrics)]
    out = []
    for where, metric in named:
        group, _, name = metric.partition(".")
        if group not in declared:
            out.append(
                f"{where}: '{metric}' names the evaluation group '{group}', which the suite does not have "
                f"(groups: {', '.join(sorted(declared)) or 'none'})"
            )
            continue
        patterns = declared[group]
        if patterns is None:  # an evaluator that declares no metric names: the run is the only check
            continue
        if not name or not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            shown = ", ".join(dict.fromkeys(patterns))
            out.append(f"{where}: '{metric}' is not a metric of group '{group}' (it returns: {shown})")
    return out


def memory_problems(plan: Plan) -> list[str]:
    """Pretraining jobs whose in-memory split (GiB per process × processes) exceeds ``executor.mem_gb``."""
    from .cost import estimate_job

    suite = plan.suite
    mem = suite.executor.mem_gb
    if mem is None or suite.cost is None:
        return []
    out = []
    for job in plan.jobs:
        if job.kind != "pretrain" or job.plan_error:
            continue
        est = estimate_job(job, suite.cost)
        if est.host_gib_per_process is None:
            continue
        procs = max(1, job.gpus)
        need = est.host_gib_per_process * procs
        if need > mem:
            out.append(
                f"job {job.id} ({job.describe()}) does not fit in memory: the trainer holds the training split "
                f"in every process, {est.host_gib_per_process:.1f} GiB x {procs} process(es) = {need:.1f} GiB "
                f"> executor.mem_gb = {mem:g} (cost.train_images = {suite.cost.train_images}); stream it from "
                f"the files (data.stream=true, image-folder datasets) or give the job more memory"
            )
    return out


def _roots(plan: Plan) -> dict[tuple[str, str], list[str]]:
    """(dataset, root) -> the jobs that read it."""
    out: dict[tuple[str, str], list[str]] = {}
    for job in plan.jobs:
        name, root = _dataset_of(job)
        if name:
            out.setdefault((name, root or ""), []).append(job.id)
    return out


def _dataset_of(job: Job) -> tuple[str | None, str | None]:
    if job.kind == "pretrain":
        data: dict[str, Any] = (job.spec.get("config") or {}).get("data") or {}
        return data.get("dataset"), data.get("root")
    if job.kind == "eval":
        return job.spec.get("dataset"), (job.spec.get("dataset_options") or {}).get("root")
    return None, None


def data_problems(plan: Plan) -> list[str]:
    """Each dataset root the plan reads: it exists and holds the files of its layout."""
    from zoo.datasets.roots import check_root

    out = []
    for (name, root), jobs in _roots(plan).items():
        for problem in check_root(name, root or None):
            out.append(f"dataset '{name}' (read by job(s) {', '.join(jobs)}): {problem}")
    return out
