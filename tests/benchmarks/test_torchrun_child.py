"""Multi-GPU pretraining's torchrun child ends with the runner process that started it (review of issue 24).

Real processes: a parent runs the runner's pretraining stage for a 2-GPU job, with a stand-in for torchrun (a
small script that records the signals it gets, "checkpoints" for a second and exits 75); the parent is then
killed with SIGKILL, or sent SIGTERM / SIGUSR1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import os, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def on_signal(sig, frame):
    log.write(f"signal {signal.Signals(sig).name}\\n")
    time.sleep(1.0)  # the ranks finish their step and write a checkpoint
    log.write("checkpointed\\n")
    os._exit(75)
for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, on_signal)
log.write(f"ready {os.getpid()}\\n")
time.sleep(120)
log.write("finished\\n")
"""


def _parent(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    child, log = tmp_path / "torchrun_stand_in.py", tmp_path / "child.log"
    child.write_text(CHILD)
    launcher = tmp_path / "python-for-torchrun"  # the stage runs ``sys.executable -m torch.distributed.run``
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {child} {log}\n")
    launcher.chmod(0o755)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from types import SimpleNamespace
        import benchmarks.runner.stages as stages
        from pretrain_tiny import tiny_config
        from zoo.config import to_dict
        job = SimpleNamespace(id="t", gpus=2, spec={{"config": to_dict(tiny_config())}})
        sys.executable = {str(launcher)!r}
        stages.run_pretrain(job, Path({str(tmp_path / "run")!r}))
        print("RETURNED")
    """)
    paths = [str(REPO), str(REPO / "tests" / "pretrain"), *sys.path]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, log


def _child_pid(proc: subprocess.Popen, log: Path) -> int:
    deadline = time.time() + 120
    while time.time() < deadline:
        text = log.read_text() if log.exists() else ""
        if text.startswith("ready "):
            return int(text.split()[1])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the stand-in for torchrun never started")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent-death signal is Linux's prctl")
def test_kill9_of_the_parent_stops_torchrun(tmp_path):
    proc, log = _parent(tmp_path)
    child = _child_pid(proc, log)
    try:
        proc.kill()
        proc.wait(30)
        assert _gone_within(child, 20), "torchrun outlived the killed runner process (re-parented to PID 1)"
        assert log.read_text().splitlines()[1:] == ["signal SIGTERM", "checkpointed"]  # it stopped cleanly
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_reaches_torchrun_which_checkpoints_before_the_parent_ends(tmp_path, sig):
    proc, log = _parent(tmp_path)
    child = _child_pid(proc, log)
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert log.read_text().splitlines()[1:] == ["signal SIGTERM", "checkpointed"], err  # before the parent ended
        assert proc.returncode == -sig, err  # then the parent ends as the signal would have ended it
        assert _gone_within(child, 5)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
