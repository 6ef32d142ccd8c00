"""A record is tied to its job: another job's record, copied over it, is never its number (review of issue 24)."""

from __future__ import annotations

import json
import math
import shutil

import fakes
from test_runner import toy_suite

from benchmarks.runner.cli import build_leaderboard, leaderboard_main
from benchmarks.runner.executors import LocalExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.store import Store
from zoo.records import write_record


def _toy_run(tmp_path):
    plan = make_plan(toy_suite(tmp_path, extra=["seeds=[0]"]), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    return plan, store


def _knn(plan, store, variant):
    job = next(j for j in plan.eval_jobs() if j.variant == variant and j.group == "knn")
    return job, store.record_path(job.id)


def _copy_byol_over_weak(plan, store):
    """``cp records/<byol knn>.json records/<weak knn>.json``: a valid checksum, byol's 0.8 in weak's file."""
    byol, byol_path = _knn(plan, store, "byol")
    weak, weak_path = _knn(plan, store, "weak")
    shutil.copyfile(byol_path, weak_path)
    return byol, weak, weak_path


def test_run_recomputes_another_jobs_record_and_says_so(tmp_path, fake_env):
    plan, store = _toy_run(tmp_path)
    byol, weak, weak_path = _copy_byol_over_weak(plan, store)
    assert not store.is_done(weak)
    before = len(fakes.read_log(fake_env))
    lines: list[str] = []
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lines.append)
    reported = "\n".join(lines)
    assert f"bad record, its job runs again: {weak_path}: is the record of job {byol.id}, not of job {weak.id}" in (
        reported
    )
    rerun = {j for e, j in fakes.read_log(fake_env)[before:] if e == "start"}
    assert rerun == {weak.id}
    assert {o.job_id for o in outcomes if o.status == "done"} == {weak.id}
    rec = json.loads(weak_path.read_text())
    assert rec["benchmark"]["job_id"] == weak.id and rec["metrics"]["top1"] == 0.5


def test_leaderboard_lists_another_jobs_record_as_bad(tmp_path, fake_env, capsys):
    plan, store = _toy_run(tmp_path)
    byol, weak, weak_path = _copy_byol_over_weak(plan, store)
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 1  # not weak at 80 %, exit 0
    out = capsys.readouterr().out
    assert f"bad record, left out of the tables: {weak_path}: is the record of job {byol.id}" in out
    lb, ok = build_leaderboard(
        plan.suite, plan.to_dict()["entries"], store.root, tmp_path / "lb", plots=False, check=False, log=print
    )
    assert not ok and math.isnan(lb.value("weak", "knn.top1"))
    assert lb.value("byol", "knn.top1") == 0.8


def test_rescore_lists_another_jobs_record_as_bad(tmp_path, fake_env, capsys):
    from downstream.detection.rescore import main

    plan, store = _toy_run(tmp_path)
    byol, weak, weak_path = _copy_byol_over_weak(plan, store)
    assert main([str(store.root)]) == 1
    err = capsys.readouterr().err
    assert f"BAD RECORD {weak_path}: is the record of job {byol.id}, not of job {weak.id}" in err


def test_a_record_naming_no_job_is_read_and_counted_like_a_legacy_one(tmp_path, fake_env, capsys):
    plan, store = _toy_run(tmp_path)
    weak, path = _knn(plan, store, "weak")
    rec = json.loads(path.read_text())
    del rec["benchmark"]["job_id"]
    write_record(path, {k: v for k, v in rec.items() if k != "record_sha256"})  # sealed, naming no job
    assert store.is_done(weak)
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 0
    assert "1 record(s) name no job" in capsys.readouterr().out
    lines: list[str] = []
    run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lines.append)
    assert any("1 record(s) name no job" in line for line in lines)


def test_published_records_name_their_own_job():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "results"
    paths = [p for p in root.glob("*/records/*.json") if p.parts[-3] != "fashion-mnist"]
    assert paths
    for path in paths:
        assert json.loads(path.read_text())["benchmark"]["job_id"] == path.stem, path
