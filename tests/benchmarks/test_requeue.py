"""The submitit executor requeues pre-empted jobs (issue 24.6), through submitit's own signal handler."""

from __future__ import annotations

import signal
import textwrap
from contextlib import nullcontext

import fakes
import pytest

from benchmarks.runner.executors import RequeueOnPreemption, SubmititExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.store import Store
from benchmarks.runner.suite import load_suite

submitit = pytest.importorskip("submitit")

SUITE = """
name: requeue
scale: "fake stages"
seeds: [0]
variants:
  byol: {kind: pretrain, config: byol.yaml, overrides: [quality=0.8]}
evaluations:
  - {evaluator: knn, dataset: digits-m}
"""


def test_submitit_jobs_are_checkpointable(tmp_path, fake_env, monkeypatch):
    """What the executor submits has submitit's ``checkpoint``: the same call, resubmitted."""
    submitted = []

    class Future:
        def __init__(self, fn, args):
            self.fn, self.args = fn, args

        def result(self):
            return self.fn(*self.args)

    class Executor:
        def batch(self):
            return nullcontext()

        def submit(self, fn, *args):
            submitted.append((fn, args))
            return Future(fn, args)

    monkeypatch.setattr(SubmititExecutor, "_executor", lambda self, *a: Executor())
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    plan = make_plan(load_suite(path, []), fakes.FAKE_RESOLVERS)
    outcomes = run_plan(plan, Store(tmp_path / "res"), SubmititExecutor(tmp_path / "s"), fakes.FAKE_FNS, log=print)
    assert [o.status for o in outcomes] == ["done", "done"] and len(submitted) == 2
    from submitit.core.utils import DelayedSubmission

    for fn, args in submitted:
        again = DelayedSubmission(fn, *args)._checkpoint_function()  # what submitit calls on pre-emption
        assert again is not None and again.function is fn and again.args == args


def test_preemption_signal_requeues_through_submitit(tmp_path, monkeypatch):
    """submitit's handler of its pre-emption signal checkpoints our callable, requeues it and exits."""
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths

    events = []

    class Env:
        global_rank = 0

        def _requeue(self, countdown):
            events.append(("requeue", countdown))

    delayed = DelayedSubmission(RequeueOnPreemption(), str(tmp_path / "res"), {"id": "j1"}, None)
    delayed.set_timeout(60, 3)
    paths = JobPaths(tmp_path / "submitit", job_id="42")
    paths.folder.mkdir(parents=True)
    handler = SignalHandler(Env(), paths, delayed)
    monkeypatch.setattr(handler, "_exit", lambda: events.append(("exit",)))
    handler.checkpoint_and_try_requeue(signal.SIGUSR2)
    assert events == [("requeue", 3), ("exit",)]
    resubmitted = DelayedSubmission.load(paths.submitted_pickle)
    assert isinstance(resubmitted.function, RequeueOnPreemption)
    assert resubmitted.args == (str(tmp_path / "res"), {"id": "j1"}, None)
