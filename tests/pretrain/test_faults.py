"""Pretraining under faults (issue 24): torn metrics lines, corrupt checkpoints, SIGTERM / SIGUSR1, kill -9
leftovers, mid-epoch resume, full disks. Kills and signals hit real processes.

Every interrupted run is compared with one uninterrupted reference run of the same config: the weights
(online and target) bit for bit, and ``metrics.jsonl`` record for record except wall-clock fields.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pretrain_tiny import CONFIGS, TINY, tiny_config

from pretrain.cli import export_main
from pretrain.cli import main as cli_main
from pretrain.train import read_metrics, train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUN = ["run.epochs=4", "run.knn_every=0"]  # 3 steps per epoch, 12 steps
TIMING = {"images_per_s", "train_s", "checkpoint_s"}  # wall-clock fields: differ between any two runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of ``RUN``: (checkpoint dict, metrics records without wall-clock fields)."""
    run = train(tiny_config(*RUN), tmp_path_factory.mktemp("reference") / "run")
    return _ckpt(run), _records(run)


def _ckpt(run):
    return torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)


def _records(run):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run)]


def _assert_same_run(run, reference):
    ref_ckpt, ref_records = reference
    ckpt = _ckpt(run)
    assert ckpt["step"] == ref_ckpt["step"] == 12
    for net in ("online", "target"):
        for mod, state in ref_ckpt[net].items():
            for k, v in state.items():
                assert torch.equal(v, ckpt[net][mod][k]), f"{net}.{mod}.{k} differs from the uninterrupted run"
    assert _records(run) == ref_records


def _cli(run, *overrides):
    """argv of ``byol-bench pretrain`` for the tiny config."""
    return [str(CONFIGS / "byol.yaml"), *TINY, *RUN, *overrides, "--out", str(run)]


def _child(script: str, argv: list[str]) -> subprocess.Popen:
    """``byol-bench pretrain argv`` in a new Python process that first runs ``script`` (a test hook)."""
    code = f"{script}\nfrom benchmarks.cli import main\nraise SystemExit(main(['pretrain', *{argv!r}]))\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- 2. a torn metrics.jsonl line ---------------------------------------------------------------------------


def test_torn_metrics_line_is_dropped_on_resume(tmp_path, reference, caplog):
    run = tmp_path / "run"
    train(tiny_config(*RUN, "run.stop_after_epochs=2"), run)
    with open(run / "metrics.jsonl", "ab") as fh:  # a full disk tore the next append mid-line
        fh.write(b'{"epoch": 2.3333, "images_per_s": 81.5, "kind": "step", "lo')
    # readers stop at the last complete line, and say where
    with caplog.at_level(logging.WARNING, logger="pretrain"):
        records = read_metrics(run)
    assert records and records[-1]["step"] == 6
    assert f"{run / 'metrics.jsonl'} line {len(records) + 1}" in caplog.text
    # and the resume is not blocked by it: it ends as the uninterrupted run does
    train(tiny_config(*RUN), run)
    _assert_same_run(run, reference)
    assert (run / "metrics.jsonl").read_bytes().endswith(b"}\n")


# -- 5. a corrupt checkpoint --------------------------------------------------------------------------------


def test_flipped_byte_in_last_pt_falls_back_to_prev(tmp_path, reference, caplog):
    run = tmp_path / "run"
    train(tiny_config(*RUN, "run.stop_after_epochs=2"), run)  # saves at steps 2, 3, 4, 6: last = 6, prev = 4
    last = run / "checkpoints" / "last.pt"
    assert _ckpt(run)["step"] == 6
    _flip_byte(last, last.stat().st_size // 2)  # in the tensor data: torch.load would read it without a word
    with caplog.at_level(logging.WARNING, logger="pretrain"):
        train(tiny_config(*RUN), run)
    _assert_same_run(run, reference)  # resumed from step 4: the same target network as the reference
    assert f"checkpoint {last} is unusable" in caplog.text and "prev.pt (step 4)" in caplog.text
    assert (run / "checkpoints" / "last.pt.bad").is_file()  # kept for inspection, never loaded again


def test_no_usable_checkpoint_fails_naming_the_paths(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(_cli(run, "run.stop_after_epochs=2")) == 0
    for name in ("last.pt", "prev.pt"):
        if (run / "checkpoints" / name).exists():
            _flip_byte(run / "checkpoints" / name, 0)  # the zip header: torch.load itself fails
    capsys.readouterr()
    assert cli_main(_cli(run)) == 1
    err = capsys.readouterr().err
    last_line = err.strip().splitlines()[-1]
    assert str(run / "checkpoints" / "last.pt") in last_line and str(run / "checkpoints" / "prev.pt") in last_line
    assert "Traceback" not in err


def test_checkpoint_without_checksum_still_resumes(tmp_path, reference, caplog):
    """Run directories of earlier versions have no .sha256 files: they resume (unverified, with a warning)."""
    run = tmp_path / "run"
    train(tiny_config(*RUN, "run.stop_after_epochs=2"), run)
    for f in (run / "checkpoints").glob("*.sha256"):
        f.unlink()
    (run / "checkpoints" / "prev.pt").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="pretrain"):
        train(tiny_config(*RUN), run)
    assert "loaded unverified" in caplog.text
    _assert_same_run(run, reference)
    checksums = (run / "checkpoints" / "last.pt.sha256").read_text().split()
    assert checksums[1] == "last.pt" and len(checksums[0]) == 64


# -- 6 and 9. SIGTERM / SIGUSR1: finish the step, checkpoint, exit 75; mid-epoch resume ----------------------

SLOW_STEPS = """
import time
import pretrain.train as T
_lr_at = T.lr_at
T.lr_at = lambda *a, **k: (time.sleep(0.4), _lr_at(*a, **k))[1]  # 0.4 s a step: time to signal mid-run
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_checkpoints_the_step_and_resumes_bit_exactly(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = _child(SLOW_STEPS, _cli(run, "run.checkpoint_every=1000"))  # no checkpoint but at epoch ends
    _signal_at_step(proc, run, 4, sig)  # step 4: one step into epoch 2; the signal lands in step 5
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    reached = [r["step"] for r in read_metrics(run) if r["kind"] == "step"][-1]
    assert 4 <= reached < 12 and _ckpt(run)["step"] == reached  # the work up to the signal is kept
    assert f"{signal.Signals(sig).name} received: stopped after step {reached}" in err
    assert cli_main(_cli(run)) == 0  # the requeued job
    _assert_same_run(run, reference)


def test_runner_pretrain_stage_checkpoints_then_ends_by_the_signal(tmp_path):
    """In the runner (a pool worker, or the runner itself) pretraining keeps its step, then the process ends
    by the signal as before: a worker that outlived a killed runner would idle forever (issue 24.3)."""
    run = tmp_path / "run"
    script = SLOW_STEPS + textwrap.dedent(f"""
        from types import SimpleNamespace
        from pretrain_tiny import tiny_config
        from benchmarks.runner.stages import run_pretrain
        from zoo.config import to_dict
        cfg = to_dict(tiny_config(*{RUN!r}, "run.checkpoint_every=1000"))
        job = SimpleNamespace(id="t", gpus=1, spec={{"config": cfg}})
        run_pretrain(job, {str(run)!r})
        raise SystemExit(0)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    _signal_at_step(proc, run, 4, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, err
    reached = [r["step"] for r in read_metrics(run) if r["kind"] == "step"][-1]
    assert 4 <= reached < 12 and _ckpt(run)["step"] == reached


def _signal_at_step(proc, run, step, sig):
    """Send ``sig`` to ``proc`` once ``run``'s metrics log has reached ``step``."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        steps = [r["step"] for r in _safe_records(run) if r.get("kind") == "step"]
        if steps and steps[-1] >= step:
            break
        time.sleep(0.02)
    proc.send_signal(sig)


def _safe_records(run):
    try:
        return read_metrics(run)
    except (OSError, ValueError):
        return []


def test_mid_epoch_resume_logs_the_epoch_as_one_run_does(tmp_path, reference, monkeypatch):
    """A crash at step 5 resumes from the checkpoint at step 4, one step into epoch 2: its proj_std mean and
    collapsed flag must still average all three of its steps."""
    import pretrain.train as T

    class Crash(Exception):
        pass

    real = T.lr_at

    def crash_at_5(step, *a, **k):
        if step == 5:
            raise Crash
        return real(step, *a, **k)

    run = tmp_path / "run"
    monkeypatch.setattr(T, "lr_at", crash_at_5)
    with pytest.raises(Crash):
        train(tiny_config(*RUN), run)  # checkpoint_every=2: last.pt at step 4
    monkeypatch.setattr(T, "lr_at", real)
    assert _ckpt(run)["step"] == 4
    train(tiny_config(*RUN), run)
    _assert_same_run(run, reference)


# -- 8. kill -9 leftovers -------------------------------------------------------------------------------------

KILL_AT = """
import os, re, signal
_replace = os.replace
def _kill_at(src, dst, *a, **k):  # kill -9 this process just before it renames a matching file into place
    if re.search({pattern!r}, str(src)):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)
os.replace = _kill_at
"""


def test_kill9_leaves_no_temp_files_after_the_rerun(tmp_path, reference):
    run = tmp_path / "run"
    # killed during the first checkpoint save, with the temporary checkpoint complete on disk
    proc = _child(KILL_AT.format(pattern=r"/\.last\.pt\.[a-z0-9_]+\.tmp$"), _cli(run))
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list((run / "checkpoints").glob(".last.pt.*.tmp")) and not (run / "checkpoints" / "last.pt").exists()
    # killed while the artifact folder is renamed into place, at the very end
    proc = _child(KILL_AT.format(pattern=r"/\.artifact\.[^/]+/a$"), _cli(run))
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list(run.glob(".artifact.*")) and not (run / "artifact").exists()
    # the rerun finishes the run, and nothing temporary stays
    assert cli_main(_cli(run)) == 0
    assert (run / "artifact" / "meta.json").is_file()
    left = [p.name for p in [*run.iterdir(), *(run / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert left == []
    _assert_same_run(run, reference)


# -- 10. a full disk ------------------------------------------------------------------------------------------


def _enospc_when(monkeypatch, needle: str) -> None:
    """``os.fsync`` of a file whose path contains ``needle`` fails as on a full disk (delayed allocation)."""
    real = os.fsync

    def fsync(fd):
        if needle in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_full_disk_at_checkpoint_ends_in_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _enospc_when(monkeypatch, "last.pt")
    rc = cli_main(_cli(run))
    err = capsys.readouterr().err
    assert rc == 74, err
    last_line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "free there" in last_line
    assert f"no space left on device writing {run / 'checkpoints' / 'last.pt'}: it needs" in last_line


def test_full_disk_at_metrics_and_artifact(tmp_path, monkeypatch, capsys):
    import pretrain.checkpoint as C
    import pretrain.export as E
    from pretrain.checkpoint import DiskFull, MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl", True, None)

    class FullFile:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "open", FullFile, raising=False)
    with pytest.raises(DiskFull, match=f"writing {tmp_path / 'metrics.jsonl'}: it needs"):
        log.write({"step": 1, "loss": 0.5})
    monkeypatch.undo()

    run = tmp_path / "run"
    assert cli_main(_cli(run, "run.epochs=1")) == 0
    capsys.readouterr()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(E, "save_artifact", full)
    assert export_main([str(run), "--out", str(tmp_path / "art")]) == 74
    err = capsys.readouterr().err
    assert f"writing {tmp_path / 'art'}: it needs" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not any(p.name.startswith(".art.") for p in tmp_path.iterdir())  # the temporary folder is gone


def test_console_log_goes_to_the_current_stderr_not_a_closed_one(tmp_path, monkeypatch):
    """A second run in one process (tests, notebooks) logs to the stderr of its time: the handler made by the
    first run must not keep the first run's (since closed) stream, which printed 'Logging error' tracebacks."""
    import io
    import sys

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    assert cli_main(_cli(tmp_path / "a")) == 0
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    assert cli_main(_cli(tmp_path / "b")) == 0
    out = second.getvalue()
    assert "Logging error" not in out and "[pretrain]" in out
