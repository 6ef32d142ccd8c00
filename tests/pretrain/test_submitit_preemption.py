"""Inside a submitit job, a pre-empted pretraining is requeued, never recorded as failed (review of issue 24).

Slurm's default pre-emption signal is SIGTERM, which submitit only logs (``SignalHandler.bypass``); its own
signal (USR2) requeues. A real process runs the runner's job as submitit would (our ``RequeueOnPreemption``
with submitit's ``SignalHandler`` installed as ``JobEnvironment._handle_signals`` installs it; only the
cluster call ``_requeue`` is a stand-in), gets the signal mid-run, and must requeue with the job's state
``preempted``; the requeued call then resumes from the checkpoint and finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pretrain_tiny import tiny_config

from benchmarks.runner.plan import Job
from pretrain.train import read_metrics
from zoo.config import to_dict

submitit = pytest.importorskip("submitit")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

JOB = """
import os, signal, sys, time
import pretrain.train as T
_lr_at = T.lr_at
T.lr_at = lambda *a, **k: (time.sleep(0.4), _lr_at(*a, **k))[1]  # 0.4 s a step: time to signal mid-run
from submitit.core.job_environment import SignalHandler
from submitit.core.utils import DelayedSubmission, JobPaths
from benchmarks.runner.executors import RequeueOnPreemption
from benchmarks.runner.stages import StageFns, run_pretrain

class Env:  # submitit's SlurmJobEnvironment, but for the scontrol call
    global_rank = 0
    def _requeue(self, countdown):
        open(REQUEUED, "w").write(str(countdown))

delayed = DelayedSubmission(RequeueOnPreemption(), STORE, JOB_DICT, StageFns(artifact={"pretrain": run_pretrain}))
delayed.set_timeout(60, 3)
paths = JobPaths(FOLDER, job_id="42")
paths.folder.mkdir(parents=True, exist_ok=True)
handler = SignalHandler(Env(), paths, delayed)
signal.signal(signal.SIGTERM, handler.bypass)  # as JobEnvironment._handle_signals does
signal.signal(signal.SIGCONT, handler.bypass)
signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
outcome = delayed.function(*delayed.args, **delayed.kwargs)
print("RETURNED", outcome, file=sys.stderr)
"""


def _wait_for_step(proc, run, step):
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            steps = [r["step"] for r in read_metrics(run) if r.get("kind") == "step"]
        except (OSError, ValueError):
            steps = []
        if steps and steps[-1] >= step:
            return
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR2])
def test_preempted_submitit_job_is_requeued_not_failed(tmp_path, sig):
    from submitit.core.utils import DelayedSubmission, JobPaths

    cfg = to_dict(tiny_config("run.epochs=4", "run.knn_every=0", "run.checkpoint_every=1000"))
    job = Job(id="j1", kind="pretrain", variant="byol", seed=0, spec={"config": cfg}, gpus=1)
    store, folder, requeued = tmp_path / "res", tmp_path / "submitit", tmp_path / "requeued"
    prelude = (
        f"STORE, FOLDER, REQUEUED = {str(store)!r}, {str(folder)!r}, {str(requeued)!r}\n"
        f"import json\nJOB_DICT = json.loads({json.dumps(job.to_dict())!r})\n"
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SUBMITIT_EXECUTOR": "slurm",
        "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]),
    }
    env.pop("SUBMITIT_PREEMPT_SIGNAL", None)
    script = prelude + textwrap.dedent(JOB)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    run = store / "runs" / job.id
    _wait_for_step(proc, run, 4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=180)

    assert "RETURNED" not in err, err  # the job did not end as if it were over
    assert proc.returncode == 255, err  # submitit's "exiting gracefully after preemption": sys.exit(-1)
    assert requeued.read_text() == "3", err  # requeued through submitit (time-out countdown untouched)
    state = json.loads((store / "jobs" / f"{job.id}.json").read_text())
    assert state["status"] == "preempted", state  # not "failed"
    reached = [r["step"] for r in read_metrics(run) if r["kind"] == "step"][-1]
    assert 4 <= reached < 12
    # the requeued job: submitit loads the checkpointed call and runs it; it resumes and finishes
    again = DelayedSubmission.load(JobPaths(folder, job_id="42").submitted_pickle)
    outcome = again.function(*again.args, **again.kwargs)
    assert outcome.status == "done", outcome
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # resumed after `reached`, no step twice
    assert json.loads((store / "jobs" / f"{job.id}.json").read_text())["status"] == "done"
