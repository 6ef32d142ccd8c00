"""``byol-bench run SUITE`` and ``byol-bench leaderboard [SUITE|RESULTS_DIR]``."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from zoo.config import ConfigError, from_dict

from .executors import JobOutcome, LocalExecutor, SubmititExecutor, run_plan
from .leaderboard import (
    Leaderboard,
    aggregate,
    provenance,
    read_records,
    records_frame,
    render_terminal,
    reproduce_commands,
    write_tables,
)
from .plan import Job, Plan, make_plan
from .stages import StageFns
from .store import Store
from .suite import SuiteSpec, load_suite

__all__ = ["run_main", "leaderboard_main", "run_suite", "build_leaderboard", "dry_run_table"]


# run ------------------------------------------------------------------------------------------------------
def _where(job: Job, suite: SuiteSpec, kind: str | None) -> str:
    """Where a job would run: this process, a local pool, or a Slurm array; multi-GPU pretraining via torchrun."""
    ex = suite.executor
    kind = kind or ex.kind
    launch = "1 process"
    if job.gpus > 1:  # pretraining: the runner launches torchrun; an evaluator (detectron2) launches its own
        launch = f"torchrun ×{job.gpus}" if job.kind == "pretrain" else f"{job.spec.get('evaluator')} ×{job.gpus}"
    gpus = f"{job.gpus} GPU" if job.gpus else "CPU/auto"
    if kind == "local":
        return f"local, {launch}, {gpus}"
    limit = ex.eval_timeout_min if job.kind == "eval" else ex.timeout_min
    part = f" {ex.partition}" if ex.partition else ""
    return f"{kind}{part}, {launch}, {gpus}, {limit} min"


def _hours(h: float) -> str:
    return f"{h:.2f}" if h < 10 else f"{h:.1f}"


def dry_run_table(plan: Plan, store: Store, executor_kind: str | None = None) -> str:
    """Which jobs would run and which are cached, where, and (with a ``cost:`` block) their GPU-hours."""
    from .cost import estimate_plan

    suite = plan.suite
    estimates = estimate_plan(plan, suite.cost)
    rows = []
    total = {"all": 0.0, "todo": 0.0}
    unknown = 0
    for j in plan.jobs:
        status = store.status(j)
        action = {
            "done": "cached",
            "failed": "run (failed before)",
            "blocked": "run (was blocked)",
            "preempted": "run (pre-empted: resumes from its checkpoint)",
            "running": "run (unfinished: killed or in progress)",
            "missing": "run",
        }[status]
        if j.plan_error and status != "done":
            action = f"fail: {j.plan_error}"
        what = j.kind if j.kind != "eval" else f"eval {j.group}: {j.spec['evaluator']} on {j.spec['dataset']}"
        row = [action, j.id, j.variant, j.seed, what, ",".join(j.deps) or "-", _where(j, suite, executor_kind)]
        if estimates:
            est = estimates[j.id]
            if est.gpu_hours is None:
                unknown += 1
            else:
                total["all"] += est.gpu_hours
                total["todo"] += est.gpu_hours if action != "cached" else 0.0
            row.append("?" if est.gpu_hours is None else _hours(est.gpu_hours))
            row.append("-" if est.host_gib_per_process is None else f"{est.host_gib_per_process:.1f}")
        rows.append(row)
    headers = ["action", "job", "variant", "seed", "what", "needs", "where"]
    if estimates:
        headers += ["GPU-h", "host GiB/proc"]
    todo = sum(1 for r in rows if r[0] != "cached")
    lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True), ""]
    lines.append(f"{todo} job(s) to run, {len(rows) - todo} cached (results: {store.root})")
    if estimates and suite.cost is not None:
        c = suite.cost
        lines.append(
            f"estimated GPU-hours: {_hours(total['todo'])} to run ({_hours(total['all'])} for the whole suite)"
            + (f"; {unknown} job(s) without a stated cost" if unknown else "")
        )
        figures = []
        if c.pretrain_images_per_s is not None:
            figures.append(f"pretraining {c.pretrain_images_per_s:g} images/s per GPU on {c.train_images} images")
        if c.detection_s_per_iter is not None:
            figures.append(f"detection {c.detection_s_per_iter:g} s/iteration on {c.detection_gpus} GPUs")
        if c.eval_gpu_hours:
            figures.append("evaluations " + ", ".join(f"{k} {v:g} h" for k, v in c.eval_gpu_hours.items()))
        lines.append(f"  from the suite's stated costs ({c.device or 'device not stated'}): " + "; ".join(figures))
        if c.source:
            lines.append(f"  source: {c.source}")
        if any(e.host_gib_per_process is not None for e in estimates.values()):
            lines.append(
                "  host GiB/proc: the in-memory uint8 training split each pretraining process holds "
                "(0: streamed from the files)"
            )
    for var in suite.unset_env:
        lines.append(f"warning: ${{{var}}} is not set; the jobs that read it cannot run (export {var}=/path)")
    return "\n".join(lines)


def _executor(
    suite: SuiteSpec, store: Store, kind: str | None, workers: int | None
) -> LocalExecutor | SubmititExecutor:
    ex = suite.executor
    kind = kind or ex.kind
    if kind == "local":
        return LocalExecutor(workers or ex.workers)
    cluster = {"slurm": ex.cluster, "submitit-local": "local", "submitit-debug": "debug"}[kind]
    return SubmititExecutor(
        store.root / "submitit",
        cluster,
        partition=ex.partition,
        gpus_per_job=ex.gpus_per_job,
        cpus_per_job=ex.cpus_per_job,
        mem_gb=ex.mem_gb,
        timeout_min=ex.timeout_min,
        eval_timeout_min=ex.eval_timeout_min,
        array_parallelism=ex.array_parallelism,
        slurm_additional=ex.slurm_additional,
    )


def summarize(plan: Plan, store: Store, outcomes: list[JobOutcome]) -> tuple[str, bool]:
    """What ran, what was cached, what failed and why; ``ok`` is False when any job did not finish."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines = [
        "summary: "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "cached", "failed", "blocked"))
        + (f", {counts['preempted']} preempted" if counts.get("preempted") else "")
        + f" (of {len(outcomes)} jobs)"
    ]
    bad = [o for o in outcomes if o.status in ("failed", "blocked", "preempted")]
    for o in bad:
        job = plan.by_id[o.job_id]
        first = (o.error or "").strip().splitlines()[0] if o.error else ""
        lines.append(f"  {o.status.upper()} {job.describe()} [job {job.id}]: {first}")
    if bad:
        lines.append(f"  tracebacks: {store.root / 'jobs'}/<job>.json; run the same command again to retry")
    return "\n".join(lines), not bad


def run_suite(
    suite: SuiteSpec,
    results_dir: str | Path | None = None,
    *,
    fns: StageFns | None = None,
    executor: LocalExecutor | SubmititExecutor | None = None,
    plan: Plan | None = None,
    log: Any = print,
) -> tuple[Plan, list[JobOutcome]]:
    """Plan and run the missing jobs of ``suite`` (the library form of ``byol-bench run``)."""
    store = Store(results_dir or suite.default_results_dir())
    plan = plan or make_plan(suite)
    outcomes = run_plan(plan, store, executor or _executor(suite, store, None, None), fns, log)
    return plan, outcomes


def run_main(argv: list[str]) -> int:
    """Run a suite: plan, run what is missing (resumable), summarise, leaderboard, check expectations."""
    p = argparse.ArgumentParser(prog="byol-bench run", description=run_main.__doc__)
    p.add_argument("suite", help="suite YAML, e.g. benchmarks/suites/quickstart.yaml")
    p.add_argument("--results-dir", default=None, help="default: the suite's results_dir or outputs/<name>")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (to run / cached) and check it: exit 1 on a job that cannot run, an unknown metric, "
        "a plan that does not fit the executor's memory, or a dataset root without its files",
    )
    p.add_argument(
        "--no-data-check",
        action="store_true",
        help="with --dry-run: do not look at the dataset roots (plan on a machine without the data)",
    )
    p.add_argument("--executor", choices=["local", "slurm", "submitit-local", "submitit-debug"], default=None)
    p.add_argument("--workers", type=int, default=None, help="local parallel workers (processes)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite key, e.g. --set seeds=[0] --set variants.byol.overrides=[run.epochs=1]",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="VARIANT",
        help="run only this variant's jobs (repeatable); the leaderboard still shows the whole suite",
    )
    p.add_argument("--no-leaderboard", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # progress lines appear as they happen, also in a log file
        sys.stdout.reconfigure(line_buffering=True)
    try:  # a dry run plans even where a ${VAR} the suite reads (a dataset root) is not set here
        suite = load_suite(args.suite, args.sets, require_env=not args.dry_run)
    except ConfigError as exc:
        print(f"byol-bench run: {exc}", file=sys.stderr)
        return 2
    store = Store(args.results_dir or suite.default_results_dir())
    plan = make_plan(suite)
    unknown = sorted(set(args.only or []) - set(suite.variants))
    if unknown:
        print(f"byol-bench run: --only {unknown[0]!r} is not a variant of {suite.name}", file=sys.stderr)
        return 2
    only = set(args.only) if args.only else None
    if args.dry_run:
        from .checks import plan_problems

        print(dry_run_table(plan, store, args.executor))
        problems = plan_problems(plan, store, data_check=not args.no_data_check)
        if args.no_data_check:
            print("dataset roots not checked (--no-data-check)")
        if problems:
            print(f"\nbyol-bench run: the dry run found {len(problems)} problem(s):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        roots = "" if args.no_data_check else "; every dataset root has its files"
        print(f"plan checked: every job can run, every named metric exists, memory fits{roots}")
        return 0
    start = time.time()
    print(f"suite '{suite.name}': {len(plan.jobs)} jobs, results in {store.root}")
    outcomes = run_plan(plan, store, _executor(suite, store, args.executor, args.workers), only=only)
    summary, ok = summarize(plan, store, outcomes)
    print(f"\n{summary}\nwall time {time.time() - start:.1f}s")
    if args.no_leaderboard:
        return 0 if ok else 1
    if only:  # expectations about rows this run did not produce are not checked (they would be misses)
        kept = [e for e in suite.expected if _about(e, only)]
        if len(kept) < len(suite.expected):
            print(f"--only: checking {len(kept)} of {len(suite.expected)} expected results (the rest name other rows)")
        suite = dataclasses.replace(suite, expected=kept)
    lb, checks_ok = build_leaderboard(
        suite, [j.to_dict() for j in plan.entries], store.root, store.root / "leaderboard", plots=not args.no_plots
    )
    return 0 if ok and checks_ok else 1


def _about(item: list[Any], variants: set[str]) -> bool:
    """Whether an ``expected`` entry compares only rows among ``variants``."""
    from .suite import parse_expectation

    e = parse_expectation(item)
    return e.variant in variants and (not isinstance(e.target, str) or e.target in variants)


# leaderboard ----------------------------------------------------------------------------------------------
def build_leaderboard(
    suite: SuiteSpec,
    entries: list[dict[str, Any]],
    results_dir: str | Path,
    out_dir: str | Path,
    *,
    baseline: str | None = None,
    plots: bool = True,
    check: bool = True,
    log: Any = print,
) -> tuple[Leaderboard, bool]:
    """Aggregate the records of ``entries``, write tables (+ plots), print, and check expectations."""
    from .expect import check_expectations

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    found = read_records(entries, results_dir / "records")  # each checked against its own checksum
    for problem in found.bad:
        log(f"bad record, left out of the tables: {problem}")
    if found.unsealed:
        log(f"note: {found.unsealed} record(s) have no checksum (written before records carried one): not verified")
    if found.unbound:
        log(
            f"note: {found.unbound} record(s) name no job (written before records named theirs): not checked against it"
        )
    df = records_frame(entries, results_dir / "records", records=found)
    spec = suite.leaderboard
    lb = aggregate(
        df,
        list(suite.variants),
        baseline=baseline or spec.baseline,
        metrics=list(spec.metrics) or None,
        lower_is_better=spec.lower_is_better,
        labels={v: suite.label(v) for v in suite.variants},
    )
    recs = [found.records[i] for i in sorted(set(df["job_id"]))]
    prov = provenance(
        suite.name,
        records=recs,
        scale=suite.scale,
        description=suite.description,
        commands=reproduce_commands(suite.source, results_dir),
    )
    written = write_tables(lb, prov, out_dir, spec.precision)
    if plots and not df.empty:
        written += _plots(suite, entries, results_dir, out_dir / "plots", lb)
    log("\n" + render_terminal(lb, prov, spec.precision))
    log(
        f"\nleaderboard files: {', '.join(str(p) for p in written[:3])}"
        + (f" (+{len(written) - 3} plots)" if len(written) > 3 else "")
    )
    ok = True
    if check and suite.expected:
        results = check_expectations(lb, suite.expectations())
        log("\nexpected results:")
        for r in results:
            log(f"  {'ok  ' if r.ok else 'MISS'} {r.message}")
        ok = all(r.ok for r in results)
        if not ok:
            log(f"{sum(not r.ok for r in results)} expected result(s) missed")
    if found.bad:  # a table missing a record's numbers is not a result: say so and fail
        log(f"{len(found.bad)} bad record(s) left out (listed above); `byol-bench run` recomputes them")
        ok = False
    return lb, ok


def _plots(
    suite: SuiteSpec, entries: list[dict[str, Any]], results_dir: Path, out_dir: Path, lb: Leaderboard
) -> list[Path]:
    from .plots import bar_charts, curve_plot, lookup, loss_curves

    note = suite.scale
    spec = suite.leaderboard
    metrics = list(spec.plot_metrics or spec.metrics) or [f"{g}.{m}" for g, m in lb.columns]
    paths = bar_charts(lb, metrics, out_dir, note)
    pretrain = [e for e in entries if e["kind"] == "pretrain"]
    for curve in spec.curves:
        x_of = {}
        for v in curve.variants:
            cfgs = [e["spec"]["config"] for e in pretrain if e["variant"] == v]
            if cfgs:
                x_of[v] = lookup(cfgs[0], curve.param)
        path = curve_plot(
            lb,
            x_of,
            list(curve.metrics),
            curve.xlabel or curve.param,
            out_dir / f"curve_{curve.param.replace('.', '_')}.png",
            note,
        )
        if path:
            paths.append(path)
    runs: dict[str, list[Path]] = {}
    for e in pretrain:
        runs.setdefault(suite.label(e["variant"]), []).append(results_dir / "runs" / e["id"] / "metrics.jsonl")
    paths += loss_curves(runs, out_dir, note)
    return paths


def _publish(entries: list[dict[str, Any]], plan_dict: dict[str, Any], src: Path, dst: Path) -> None:
    """Copy what the tables are built from (plan, records + their evidence, job states, pretraining logs) to ``dst``."""
    from zoo.io import atomic_write_json

    dst.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dst / "plan.json", plan_dict)
    for e in entries:
        for rel in (f"records/{e['id']}.json", f"jobs/{e['id']}.json", f"runs/{e['id']}/metrics.jsonl"):
            if (src / rel).is_file() and (src / rel).resolve() != (dst / rel).resolve():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, dst / rel)
        # the files a record keeps (detection predictions) travel with it
        evidence = src / "records" / f"{e['id']}.evidence"
        if evidence.is_dir() and evidence.resolve() != (dst / "records" / evidence.name).resolve():
            shutil.copytree(evidence, dst / "records" / evidence.name, dirs_exist_ok=True)


def leaderboard_main(argv: list[str]) -> int:
    """Aggregate a suite's records into tables (Markdown, CSV, LaTeX), plots, and the terminal."""
    p = argparse.ArgumentParser(prog="byol-bench leaderboard", description=leaderboard_main.__doc__)
    p.add_argument(
        "source",
        nargs="?",
        default=None,
        help="a suite YAML (its current plan) or a results directory holding plan.json",
    )
    p.add_argument("--results-dir", default=None, help="with a suite YAML: where its records are")
    p.add_argument("--out", default=None, help="where tables and plots go (default: RESULTS/leaderboard)")
    p.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="copy plan, records, job states and pretraining logs to DIR and write the tables there",
    )
    p.add_argument("--baseline", default=None, help="variant the Δ table is against (default: the suite's)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-check", action="store_true", help="do not check the suite's expected results")
    args = p.parse_args(argv)
    if args.source is None:
        found = sorted(str(x.parent) for x in Path("outputs").glob("*/plan.json"))
        print(
            "byol-bench leaderboard: give a suite YAML or a results directory"
            + (f"; found: {', '.join(found)}" if found else ""),
            file=sys.stderr,
        )
        return 2
    source = Path(args.source)
    try:
        if source.is_dir():
            plan_dict = Store(source).read_plan()
            if plan_dict is None:
                print(f"byol-bench leaderboard: {source} has no plan.json (not a results directory)", file=sys.stderr)
                return 2
            suite = from_dict(SuiteSpec, plan_dict["suite"], source=str(source / "plan.json"))
            # JSON keys are sorted on disk: take the row order back from the plan's entries (suite order)
            order = list(dict.fromkeys(e["variant"] for e in plan_dict["entries"] if e["kind"] == "eval"))
            order += [v for v in suite.variants if v not in order]
            suite = dataclasses.replace(suite, variants={v: suite.variants[v] for v in order})
            entries, results_dir = plan_dict["entries"], source
        else:
            suite = load_suite(source)
            plan = make_plan(suite)
            plan_dict = plan.to_dict()
            entries, results_dir = plan_dict["entries"], Path(args.results_dir or suite.default_results_dir())
    except ConfigError as exc:
        print(f"byol-bench leaderboard: {exc}", file=sys.stderr)
        return 2
    if args.baseline and args.baseline not in suite.variants:
        print(f"byol-bench leaderboard: --baseline {args.baseline!r} is not a variant of {suite.name}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else results_dir / "leaderboard"
    if args.publish:
        _publish(entries, plan_dict, results_dir, Path(args.publish))
        results_dir = out = Path(args.publish)
    _, ok = build_leaderboard(
        suite, entries, results_dir, out, baseline=args.baseline, plots=not args.no_plots, check=not args.no_check
    )
    return 0 if ok else 1
