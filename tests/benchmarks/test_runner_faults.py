"""Faults of the runner (issue 24): orphaned workers, corrupt records, a full disk — with real processes."""

from __future__ import annotations

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
