"""Planner, cache/skip, resume after a kill, failure isolation, locking and executors — with fake stages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import fakes
import pytest

from benchmarks.runner.cli import build_leaderboard, dry_run_table, summarize
from benchmarks.runner.executors import LocalExecutor, SubmititExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.store import Store
from benchmarks.runner.suite import load_suite
from zoo.io import read_json

TOY = """
name: toy
scale: "fake stages"
seeds: [0, 1]
variants:
  byol: {kind: pretrain, config: byol.yaml, overrides: [quality=0.8]}
  weak: {kind: pretrain, config: byol.yaml, overrides: [quality=0.5]}
  sup: {kind: supervised, overrides: [quality=0.9]}
  pixels: {kind: raw-pixels}
evaluations:
  - {evaluator: knn, dataset: digits-m}
  - {evaluator: linear, dataset: digits-m, variants: [byol, weak, sup]}
leaderboard: {baseline: pixels}
expected:
  - [byol, knn.top1, ">", weak]
  - [byol, knn.top1, 0.805, 0.01]
"""


def toy_suite(tmp_path: Path, text: str = TOY, extra: list[str] | None = None):
    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent(text))
    return load_suite(path, extra)


def starts(log: Path) -> Counter:
    return Counter(job for event, job in fakes.read_log(log) if event == "start")


def test_plan_shape_and_identity(tmp_path):
    suite = toy_suite(tmp_path)
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    kinds = Counter(j.kind for j in plan.jobs)
    # 3 artifact variants x 2 seeds; knn on 4 variants + linear on 3, x 2 seeds
    assert kinds == {"pretrain": 4, "supervised": 2, "eval": 14}
    for j in plan.eval_jobs():
        if j.variant == "pixels":
            assert j.deps == () and j.spec["artifact"] == "raw-pixels"
        else:
            up = plan.by_id[j.deps[0]]
            assert up.variant == j.variant and up.seed == j.seed and up.produces_artifact
    # same suite -> same ids; editing one variant changes only that variant's jobs
    again = make_plan(toy_suite(tmp_path), fakes.FAKE_RESOLVERS)
    assert [j.id for j in again.jobs] == [j.id for j in plan.jobs]
    edited = make_plan(toy_suite(tmp_path, extra=["variants.weak.overrides=[quality=0.6]"]), fakes.FAKE_RESOLVERS)
    changed = {(j.variant, j.kind, j.group, j.seed) for j in edited.jobs} - {
        (j.variant, j.kind, j.group, j.seed) for j in edited.jobs if j.id in plan.by_id
    }
    assert changed and {c[0] for c in changed} == {"weak"}
    assert len(changed) == 2 + 4  # 2 pretrain + (knn + linear) x 2 seeds
    # an evaluator config change re-runs that evaluation only
    ev = make_plan(toy_suite(tmp_path, extra=["evaluations.1.overrides=[epochs=3]"]), fakes.FAKE_RESOLVERS)
    assert {j.group for j in ev.jobs if j.id not in plan.by_id} == {"linear"}


def test_run_then_rerun_does_nothing(tmp_path, fake_env):
    suite = toy_suite(tmp_path)
    store = Store(tmp_path / "res")
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    assert Counter(o.status for o in outcomes) == {"done": len(plan.jobs)}
    assert all(n == 1 for n in starts(fake_env).values()) and len(starts(fake_env)) == len(plan.jobs)
    assert "0 job(s) to run" in dry_run_table(plan, store)
    again = run_plan(
        make_plan(toy_suite(tmp_path), fakes.FAKE_RESOLVERS), store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None
    )
    assert Counter(o.status for o in again) == {"cached": len(plan.jobs)}
    assert len(fakes.read_log(fake_env)) == 2 * len(plan.jobs)  # nothing new started
    # records carry the job that made them; the leaderboard reads them back
    lb, ok = build_leaderboard(
        suite, [j.to_dict() for j in plan.entries], store.root, store.root / "lb", plots=False, log=lambda s: None
    )
    assert ok
    assert lb.value("byol", "knn.top1") == pytest.approx(0.805)  # mean of 0.80 and 0.81
    assert lb.value("pixels", "knn.top1") == pytest.approx(0.005)
    assert (store.root / "lb" / "leaderboard.md").is_file()


def test_edit_one_variant_reruns_only_it(tmp_path, fake_env):
    store = Store(tmp_path / "res")
    run_plan(
        make_plan(toy_suite(tmp_path), fakes.FAKE_RESOLVERS), store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None
    )
    fake_env.unlink()
    edited = make_plan(toy_suite(tmp_path, extra=["variants.weak.overrides=[quality=0.6]"]), fakes.FAKE_RESOLVERS)
    run_plan(edited, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    ran = {edited.by_id[j].variant for j in starts(fake_env)}
    assert ran == {"weak"} and len(starts(fake_env)) == 6


def test_failure_is_isolated_and_retried(tmp_path, fake_env):
    suite = toy_suite(tmp_path, extra=["variants.weak.overrides=[quality=0.5, fail=true]"])
    store = Store(tmp_path / "res")
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    status = {plan.by_id[o.job_id].variant + ":" + plan.by_id[o.job_id].kind: o.status for o in outcomes}
    assert status["weak:pretrain"] == "failed" and status["weak:eval"] == "blocked"
    assert status["byol:eval"] == "done" and status["sup:eval"] == "done" and status["pixels:eval"] == "done"
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 2 and all("boom in weak" in o.error for o in failed)
    state = store.read_state(failed[0].job_id)
    assert state["status"] == "failed" and "RuntimeError: boom in weak" in state["error"]
    assert "Traceback" in state["traceback"] and "fake_artifact" in state["traceback"]
    text, ok = summarize(plan, store, outcomes)
    assert not ok and "FAILED weak seed 0: pretrain" in text and "boom in weak" in text and "BLOCKED" in text
    # expectations that involve the failed variant miss (no value), the others still pass
    _, checks_ok = build_leaderboard(
        suite, [j.to_dict() for j in plan.entries], store.root, store.root / "lb", plots=False, log=lambda s: None
    )
    assert not checks_ok
    # a re-run retries the failed and blocked jobs only
    fake_env.unlink()
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    assert {plan.by_id[j].variant for j in starts(fake_env)} == {"weak"}
    assert Counter(o.status for o in outcomes)["cached"] == len(plan.jobs) - 2 - 4


def test_eval_failure_isolated(tmp_path, fake_env):
    suite = toy_suite(tmp_path, extra=["evaluations.1.overrides=[fail=true]"])
    store = Store(tmp_path / "res")
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    bad = {o.job_id for o in outcomes if o.status != "done"}
    assert bad == {j.id for j in plan.jobs if j.group == "linear"}
    assert all("evaluator exploded" in store.read_state(j)["error"] for j in bad)


def test_plan_error_fails_only_its_jobs(tmp_path, fake_env):
    def broken(config, overrides):
        if "quality=0.5" in overrides:
            raise ValueError("unknown key 'optim.lrr'")
        return fakes._dict(config, overrides)

    resolvers = fakes.FAKE_RESOLVERS.__class__(
        broken, fakes._dict, fakes.FAKE_RESOLVERS.eval_config, fakes.FAKE_RESOLVERS.artifact_identity
    )
    plan = make_plan(toy_suite(tmp_path), resolvers)
    store = Store(tmp_path / "res")
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    bad = [o for o in outcomes if o.status in ("failed", "blocked")]
    assert bad and all(plan.by_id[o.job_id].variant == "weak" for o in bad)
    assert any("optim.lrr" in (o.error or "") for o in bad)
    assert "fail: ValueError" in dry_run_table(plan, store)


RUNNER = """
import sys
sys.path[:0] = {paths!r}
import fakes
from benchmarks.runner.executors import LocalExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.store import Store
from benchmarks.runner.suite import load_suite
plan = make_plan(load_suite({suite!r}, {extra!r}), fakes.FAKE_RESOLVERS)
run_plan(plan, Store({res!r}), LocalExecutor({workers}), fakes.FAKE_FNS, log=lambda s: None)
"""


def _runner(tmp_path, extra, workers=1):
    code = RUNNER.format(
        paths=[str(Path(fakes.__file__).parent), str(Path.cwd())],
        suite=str(tmp_path / "toy.yaml"),
        extra=extra,
        res=str(tmp_path / "res"),
        workers=workers,
    )
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_kill_in_the_middle_then_resume(tmp_path, fake_env):
    # 'weak' pretrains slowly: kill the runner while it is inside that job
    extra = ["variants.weak.overrides=[quality=0.5, sleep=30]"]
    suite = toy_suite(tmp_path, extra=extra)
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    slow = {j.id for j in plan.jobs if j.variant == "weak" and j.kind == "pretrain"}
    proc = _runner(tmp_path, extra)
    deadline = time.time() + 60
    while time.time() < deadline and not (set(starts(fake_env)) & slow):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = fakes.read_log(fake_env)
    finished = {j for e, j in before if e == "end"}
    killed = {j for e, j in before if e == "start"} - finished
    assert killed and killed <= slow and finished  # killed inside the slow job, after finishing others
    store = Store(tmp_path / "res")
    assert store.status(plan.by_id[next(iter(killed))]) == "running"  # stale state, not done
    assert "run (unfinished" in dry_run_table(plan, store)
    # resume without the sleep: same job ids? no - the config changed; so resume the same suite, faster fake
    os.environ["BENCH_FAKE_LOG"] = str(fake_env)
    fast = fakes.StageFns(artifact={k: _no_sleep for k in fakes.FAKE_FNS.artifact}, eval=fakes.fake_eval)
    outcomes = run_plan(plan, store, LocalExecutor(), fast, log=lambda s: None)
    assert all(o.status in ("done", "cached") for o in outcomes)
    after = fakes.read_log(fake_env)[len(before) :]
    rerun = {j for e, j in after if e == "start"}
    assert not (rerun & finished)  # nothing finished before ran again
    assert rerun | finished == {j.id for j in plan.jobs}  # and nothing was lost
    assert all(store.is_done(j) for j in plan.jobs)
    assert store.read_state(next(iter(killed)))["attempts"] == 2


def _no_sleep(job, run_dir):
    cfg = dict(job.spec["config"], sleep=0)
    fakes.fake_artifact(job.__class__(**{**job.__dict__, "spec": {"config": cfg}}), run_dir)


def test_two_runners_share_a_results_dir(tmp_path, fake_env):
    extra = ["variants.byol.overrides=[quality=0.8, sleep=0.5]"]
    toy_suite(tmp_path, extra=extra)
    procs = [_runner(tmp_path, extra) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    counts = starts(fake_env)
    plan = make_plan(toy_suite(tmp_path, extra=extra), fakes.FAKE_RESOLVERS)
    assert set(counts) == {j.id for j in plan.jobs}
    assert max(counts.values()) == 1  # the job lock: every job ran exactly once
    store = Store(tmp_path / "res")
    assert all(store.read_state(j.id)["status"] == "done" for j in plan.jobs)


def test_parallel_local_workers(tmp_path, fake_env):
    suite = toy_suite(tmp_path, extra=["seeds=[0]"])
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    outcomes = run_plan(plan, store, LocalExecutor(workers=2), fakes.FAKE_FNS, log=lambda s: None)
    assert Counter(o.status for o in outcomes) == {"done": len(plan.jobs)}
    # every eval started after its artifact job ended
    log = fakes.read_log(fake_env)
    pos = {(e, j): i for i, (e, j) in enumerate(log)}
    for j in plan.eval_jobs():
        for d in j.deps:
            assert pos[("end", d)] < pos[("start", j.id)]


def _worker_threads_seen(tmp_path, workers):
    plan = make_plan(
        toy_suite(tmp_path, extra=["seeds=[0]", "variants.byol.overrides=[threads=true]"]), fakes.FAKE_RESOLVERS
    )
    store = Store(tmp_path / "res")
    run_plan(plan, store, LocalExecutor(workers=workers), fakes.FAKE_FNS, log=lambda s: None)
    (job,) = [j for j in plan.jobs if j.variant == "byol" and j.kind != "eval"]
    return read_json(store.artifact_dir(job.id) / "meta.json")["threads"]


def test_parallel_workers_share_the_cpus_out(tmp_path, fake_env, monkeypatch):
    """Two workers on C CPUs run C // 2 threads each: torch's default, a thread per core in every worker,
    oversubscribed the CPU (a supervised epoch 312 s instead of 53 s on 2 cores)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("one CPU: a worker's default and its share are the same thread")
    assert _worker_threads_seen(tmp_path, workers=2) == cpus // 2
    from benchmarks.runner.executors import worker_threads

    assert worker_threads(2, cpus=2) == 1 and worker_threads(3, cpus=2) == 1 and worker_threads(2, cpus=16) == 8


def test_a_users_omp_num_threads_wins_in_the_workers(tmp_path, fake_env, monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("one CPU: the user's setting and the share are the same thread")
    monkeypatch.setenv("OMP_NUM_THREADS", str(cpus))  # torch caps it at the cores
    assert _worker_threads_seen(tmp_path, workers=2) == cpus


def test_a_killed_worker_stops_only_its_own_job(tmp_path, fake_env):
    """A worker killed mid-job (kill -9, the OOM killer) fails that job and blocks its evaluations; the job
    running beside it finishes and every other job still runs (a shared pool, once broken, failed them all)."""
    extra = ["seeds=[0]", "variants.weak.overrides=[die=true, sleep=1]"]
    extra += ["variants.byol.overrides=[quality=0.8, sleep=3]"]
    plan = make_plan(toy_suite(tmp_path, extra=extra), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    lines: list[str] = []
    outcomes = {o.job_id: o for o in run_plan(plan, store, LocalExecutor(workers=2), fakes.FAKE_FNS, log=lines.append)}
    for job in plan.jobs:
        o = outcomes[job.id]
        if job.variant == "weak" and job.kind != "eval":
            assert o.status == "failed" and "worker died" in o.error, o
        elif job.variant == "weak":
            assert o.status == "blocked", o
        else:
            assert o.status == "done", (job.describe(), o)
            assert store.is_done(job)
    ends = {j for e, j in fakes.read_log(fake_env) if e == "end"}
    assert ends == {j.id for j in plan.jobs if j.variant != "weak"}


@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_submitit_executor(tmp_path, fake_env, cluster):
    suite = toy_suite(tmp_path, extra=["seeds=[0]", "variants.weak.overrides=[fail=true]"])
    plan = make_plan(suite, fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    ex = SubmititExecutor(tmp_path / "submitit", cluster, timeout_min=5, eval_timeout_min=5)
    outcomes = run_plan(plan, store, ex, fakes.FAKE_FNS, log=lambda s: None)
    status = Counter((plan.by_id[o.job_id].variant == "weak", o.status) for o in outcomes)
    assert status == {(False, "done"): 7, (True, "failed"): 1, (True, "blocked"): 2}
    assert all(store.is_done(j) for j in plan.jobs if j.variant != "weak")
    if cluster == "local":
        assert list((tmp_path / "submitit").rglob("*_submitted.pkl"))  # really went through submitit's files


def test_threads_do_not_double_run(tmp_path, fake_env):
    """Two runners in one process (threads) also respect the job locks."""
    extra = ["seeds=[0]", "variants.byol.overrides=[quality=0.8, sleep=0.3]"]
    plan = make_plan(toy_suite(tmp_path, extra=extra), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    threads = [
        threading.Thread(
            target=run_plan, args=(plan, store, LocalExecutor(), fakes.FAKE_FNS), kwargs={"log": lambda s: None}
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(starts(fake_env).values()) == 1


def test_leaderboard_from_results_dir_and_publish(tmp_path, fake_env, capsys):
    from benchmarks.runner.cli import leaderboard_main

    suite = toy_suite(tmp_path)
    store = Store(tmp_path / "res")
    run_plan(make_plan(suite, fakes.FAKE_RESOLVERS), store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    assert leaderboard_main([str(store.root)]) == 0  # expectations hold
    out = capsys.readouterr().out
    assert "byol" in out and "ok   byol knn.top1 > weak" in out
    pub = tmp_path / "published"
    assert leaderboard_main([str(store.root), "--publish", str(pub), "--baseline", "sup"]) == 0
    assert {p.name for p in pub.iterdir()} >= {
        "plan.json",
        "records",
        "jobs",
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.tex",
        "plots",
    }
    assert len(list((pub / "records").glob("*.json"))) == 14
    assert "Δ against `sup`" in (pub / "leaderboard.md").read_text()
    # the published directory alone rebuilds the same table
    before = (pub / "leaderboard.csv").read_text().split("\n# date")[0]
    assert leaderboard_main([str(pub), "--no-plots"]) == 0
    assert "records): 0123456789ab" in (pub / "leaderboard.csv").read_text()
    assert before.splitlines()[0] == (pub / "leaderboard.csv").read_text().splitlines()[0]
    assert leaderboard_main([str(pub), "--baseline", "nope"]) == 2


def test_only_some_variants(tmp_path, fake_env):
    plan = make_plan(toy_suite(tmp_path), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None, only={"sup"})
    assert {plan.by_id[o.job_id].variant for o in outcomes} == {"sup"} and len(outcomes) == 2 + 4
    assert len(store.read_plan()["entries"]) == len(plan.entries)  # the whole suite is still recorded
    rest = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    assert Counter(o.status for o in rest) == {"cached": 6, "done": len(plan.jobs) - 6}
