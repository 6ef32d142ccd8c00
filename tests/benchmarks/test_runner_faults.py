"""Faults of the runner (issue 24): orphaned workers, corrupt records, a full disk — with real processes."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pytest
from test_runner import _runner, starts, toy_suite

# --- 24.3: workers die with the runner -----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc (psutil is not a dependency)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, out, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a PID 1 that does not reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the workers through /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_runner(tmp_path, fake_env, sig):
    """kill -9 / SIGTERM of a 2-worker runner: its workers and the resource tracker are gone within seconds."""
    extra = [
        "seeds=[0]",
        "variants.byol.overrides=[quality=0.8, sleep=120]",
        "variants.weak.overrides=[quality=0.5, sleep=120]",
        "variants.sup.overrides=[quality=0.9, sleep=120]",
    ]
    toy_suite(tmp_path, extra=extra)
    proc = _runner(tmp_path, extra, workers=2)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(starts(fake_env)) < 2:  # both workers inside a 120 s job
            time.sleep(0.2)
        assert len(starts(fake_env)) == 2, "the two workers did not start their jobs"
        workers = _descendants(proc.pid)
        assert len(workers) >= 2, workers  # two workers (+ the multiprocessing resource tracker)
        os.kill(proc.pid, sig)  # the runner only, as a scheduler or an operator would
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        left = sorted(p for p in workers if _alive(p))
        assert not left, f"orphans left after {sig.name}: {left}"
    finally:  # never leave a sleeping worker behind, whatever happened (they share the runner's session)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# --- 24.4: a corrupt record is never a number --------------------------------------------------------


def _toy_run(tmp_path):
    import fakes

    from benchmarks.runner.executors import LocalExecutor, run_plan
    from benchmarks.runner.plan import make_plan
    from benchmarks.runner.store import Store

    plan = make_plan(toy_suite(tmp_path, extra=["seeds=[0]"]), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    return plan, store


def _knn_record(plan, store, variant):
    job = next(j for j in plan.eval_jobs() if j.variant == variant and j.group == "knn")
    return job, store.record_path(job.id)


def _change_a_digit(path):
    text = path.read_text()
    assert '"top1": 0.8,' in text
    path.write_text(text.replace('"top1": 0.8,', '"top1": 0.7,'))  # one digit: 80% becomes 70%


def test_run_recomputes_a_corrupt_record_and_names_it(tmp_path, fake_env):
    import fakes

    from benchmarks.runner.executors import LocalExecutor, run_plan

    plan, store = _toy_run(tmp_path)
    changed, changed_path = _knn_record(plan, store, "byol")
    torn, torn_path = _knn_record(plan, store, "weak")
    _change_a_digit(changed_path)
    torn_path.write_text(torn_path.read_text()[:40])  # broken JSON
    before = len(fakes.read_log(fake_env))
    lines: list[str] = []
    outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lines.append)
    reported = "\n".join(lines)
    assert str(changed_path) in reported and "record_sha256" in reported
    assert str(torn_path) in reported and "not valid JSON" in reported
    rerun = {j for e, j in fakes.read_log(fake_env)[before:] if e == "start"}
    assert rerun == {changed.id, torn.id}  # just those two, recomputed
    assert {o.job_id for o in outcomes if o.status == "done"} == {changed.id, torn.id}
    assert '"top1": 0.8,' in changed_path.read_text() and store.is_done(torn)


def test_leaderboard_lists_bad_records_and_fails(tmp_path, fake_env, capsys):
    from benchmarks.runner.cli import build_leaderboard, leaderboard_main

    plan, store = _toy_run(tmp_path)
    _, changed_path = _knn_record(plan, store, "byol")
    _, torn_path = _knn_record(plan, store, "weak")
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 0
    capsys.readouterr()
    _change_a_digit(changed_path)
    torn_path.write_text("{")
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 1  # not exit 0 with 70.0
    out = capsys.readouterr().out
    assert f"bad record, left out of the tables: {changed_path}" in out
    assert f"bad record, left out of the tables: {torn_path}" in out
    assert "2 bad record(s)" in out
    lb, ok = build_leaderboard(
        plan.suite, plan.to_dict()["entries"], store.root, tmp_path / "lb", plots=False, check=False, log=print
    )
    assert not ok and math.isnan(lb.value("byol", "knn.top1"))  # no 0.7 for byol: left out, not wrong
    assert lb.value("sup", "knn.top1") == pytest.approx(0.9)  # the other records are still read and shown


def test_legacy_records_without_a_checksum_are_read_and_counted(tmp_path, fake_env, capsys):
    import json

    from benchmarks.runner.cli import leaderboard_main
    from zoo.records import CHECKSUM_KEY

    plan, store = _toy_run(tmp_path)
    _, path = _knn_record(plan, store, "byol")
    rec = json.loads(path.read_text())
    del rec[CHECKSUM_KEY]
    path.write_text(json.dumps(rec, indent=2, sort_keys=True))
    assert store.is_done(plan.by_id[path.stem])
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 0
    assert "1 record(s) have no checksum" in capsys.readouterr().out
