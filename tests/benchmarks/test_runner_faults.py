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


# --- 24.10: a full disk ends in one line, with the job marked failed -----------------------------------


def _fill_disk(monkeypatch, when):
    """Every file write ``when(path)`` says so fails as a full disk does: ENOSPC from write(), naming no file."""
    import errno

    real = Path.write_bytes
    state = {"full": False}

    def write_bytes(self, data):
        if state["full"] or when(self):
            state["full"] = state["full"] or when is _from_first_record
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return state


def _from_first_record(path):
    """The disk fills up while the first record is written: from then on nothing can be written."""
    return path.parent.name == "records"


def _toy_plan(tmp_path):
    import fakes

    from benchmarks.runner.plan import make_plan
    from benchmarks.runner.store import Store

    return make_plan(toy_suite(tmp_path, extra=["seeds=[0]"]), fakes.FAKE_RESOLVERS), Store(tmp_path / "res")


def test_full_disk_at_the_record_fails_the_job_naming_the_file(tmp_path, fake_env, monkeypatch):
    import fakes

    from benchmarks.runner.executors import LocalExecutor, run_plan

    plan, store = _toy_plan(tmp_path)
    _fill_disk(monkeypatch, lambda p: p.parent.name == "records")  # only the records' folder is full
    with pytest.raises(OSError) as exc:
        run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    line = str(exc.value)
    failed = [j for j in plan.jobs if (store.read_state(j.id) or {}).get("status") == "failed"]
    assert len(failed) == 1 and failed[0].kind == "eval"  # the run stopped at the first full-disk failure
    record = store.record_path(failed[0].id)
    assert line.startswith(f"no space left on device writing {record}: needs ") and " free there" in line
    assert "\n" not in line and store.read_state(failed[0].id)["error"] == line
    assert not any(store.record_path(j.id).exists() for j in plan.eval_jobs())  # nothing else was started


def test_full_disk_when_even_the_state_cannot_be_written_says_so(tmp_path, fake_env, monkeypatch):
    import fakes

    from benchmarks.runner.executors import LocalExecutor, run_plan

    plan, store = _toy_plan(tmp_path)
    _fill_disk(monkeypatch, _from_first_record)
    with pytest.raises(OSError) as exc:
        run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lambda s: None)
    line = str(exc.value)
    running = [j for j in plan.jobs if (store.read_state(j.id) or {}).get("status") == "running"]
    assert len(running) == 1
    assert f"no space left on device writing {store.record_path(running[0].id)}: needs " in line
    assert f"job {running[0].id} could not be marked failed" in line and "still says running" in line
    assert "\n" not in line


def test_a_stage_that_fills_the_disk_fails_its_job_and_stops_the_run(tmp_path, fake_env):
    """A stage's own one-line full-disk error (pretraining's ``DiskFull``, raised from ENOSPC) stops the run."""
    import errno

    import fakes

    from benchmarks.runner.executors import LocalExecutor, run_plan
    from benchmarks.runner.stages import StageFns

    message = f"no space left on device writing {tmp_path / 'last.pt'}: it needs 5.0 MiB, 0 bytes free there"

    def full(job, run_dir):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError(message) from exc

    plan, store = _toy_plan(tmp_path)
    fns = StageFns(artifact={k: full for k in fakes.FAKE_FNS.artifact}, eval=fakes.fake_eval)
    with pytest.raises(OSError, match="it needs 5.0 MiB"):
        run_plan(plan, store, LocalExecutor(), fns, log=lambda s: None)
    states = [store.read_state(j.id) for j in plan.jobs]
    failed = [s for s in states if s and s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == message  # one job tried, the rest not started


@pytest.mark.parametrize("when", ["from-the-start", "mid-run"])
def test_run_cli_ends_in_one_line_on_a_full_disk(tmp_path, fake_env, monkeypatch, capsys, when):
    """``byol-bench run``: no chained tracebacks, one line naming the file and the room, exit 1."""
    import fakes

    import benchmarks.runner.cli as runner_cli
    import benchmarks.runner.executors as executors
    from benchmarks.cli import main

    toy_suite(tmp_path, extra=["seeds=[0]"])
    real_make_plan = runner_cli.make_plan
    monkeypatch.setattr(runner_cli, "make_plan", lambda suite: real_make_plan(suite, fakes.FAKE_RESOLVERS))
    monkeypatch.setattr(executors, "default_stage_fns", lambda: fakes.FAKE_FNS)
    res = tmp_path / "res"
    _fill_disk(monkeypatch, (lambda p: True) if when == "from-the-start" else _from_first_record)
    rc = main(["run", str(tmp_path / "toy.yaml"), "--results-dir", str(res), "--set", "seeds=[0]", "--no-plots"])
    captured = capsys.readouterr()
    assert rc == 74 and "Traceback" not in captured.out + captured.err  # EX_IOERR, as pretraining's full disk
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    line = captured.err.strip()
    assert line.startswith("byol-bench run: no space left on device writing ") and " free there" in line
    assert str(res / ("plan.json" if when == "from-the-start" else "records")) in line


def test_published_records_carry_their_checksum():
    """results/ was sealed once (tools/seal_records.py): each published record is checked, not just read."""
    from zoo.records import read_record

    repo = Path(__file__).resolve().parents[2]
    paths = sorted(repo.glob("results/*/records/*.json"))
    assert paths
    for path in paths:
        assert read_record(path, require_checksum=True).sealed
