"""A runner removes the temporary files a killed runner left, and only those (review of issue 24).

Real processes are killed with SIGKILL inside the writers themselves: a baseline artifact's ``.artifact.*/``
folder, a record's and a job state's ``.<name>.*.tmp``. A rerun removes them; a temporary file of a job that
another live process holds the lock of, or one newer than the runner's start, is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fakes
from test_runner import toy_suite

from benchmarks.runner.executors import LocalExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.store import Store

REPO = Path(__file__).resolve().parents[2]

KILLED_IN = {
    # the real baseline stage, killed as it moves its finished temp folder into place
    "artifact": """
        import zoo.artifact
        zoo.artifact.atomic_replace_dir = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        from zoo.baselines import random_init_artifact
        random_init_artifact(store.artifact_dir(JOB) , "resnet18-w16", 0, 16)
    """,
    # the runner's record write, killed before its rename
    "record": """
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        from zoo.records import write_record
        write_record(store.record_path(JOB), {"metrics": {"top1": 0.8}})
    """,
    # a job's state, written under the store lock, killed before its rename
    "state": """
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        store.write_state(Job.from_dict(JOB_DICT), "running")
    """,
}


def _killed_in(where: str, root: Path, job) -> None:
    script = (
        "import json, os, signal, sys\n"
        "from benchmarks.runner.plan import Job\n"
        "from benchmarks.runner.store import Store\n"
        f"store = Store({str(root)!r})\n"
        f"JOB = {job.id!r}\n"
        f"JOB_DICT = json.loads({__import__('json').dumps(job.to_dict())!r})\n" + textwrap.dedent(KILLED_IN[where])
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # killed in the middle of the write


def _temp(root: Path) -> set[str]:
    """Every temporary name under ``root`` (relative paths)."""
    out = set()
    for path in root.rglob("*"):
        if path.name.endswith(".tmp") or path.name.startswith(".artifact."):
            out.add(path.relative_to(root).as_posix())
    return {p for p in out if not any(p.startswith(q + "/") for q in out)}


def test_rerun_removes_a_killed_runners_temp_files_but_not_a_live_ones(tmp_path, fake_env):
    plan = make_plan(toy_suite(tmp_path, extra=["seeds=[0]"]), fakes.FAKE_RESOLVERS)
    root = tmp_path / "res"
    store = Store(root)
    sup = next(j for j in plan.jobs if j.variant == "sup" and j.kind == "supervised")
    knn = next(j for j in plan.eval_jobs() if j.variant == "byol" and j.group == "knn")
    weak = next(j for j in plan.jobs if j.variant == "weak" and j.kind == "pretrain")
    _killed_in("artifact", root, sup)
    _killed_in("record", root, knn)
    _killed_in("state", root, weak)
    left = _temp(root)
    assert {p.split("/")[0] for p in left} == {"runs", "records", "jobs"}, left
    assert any(p.startswith(f"runs/{sup.id}/.artifact.") for p in left), left

    # another runner's job, running now: it holds its lock; its temp file is older than our start
    other = "0123456789abcdef"
    live_tmp = root / "records" / f".{other}.json.abcd1234.tmp"
    live_tmp.write_text("{}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time\nfrom benchmarks.runner.store import Store\n"
            f"with Store({str(root)!r}).job_lock({other!r}):\n    print('held', flush=True)\n    time.sleep(120)\n",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        fresh = root / "runs" / "fedcba9876543210" / ".record.json.zz99yy88.tmp"  # written after our start
        fresh.parent.mkdir(parents=True)
        fresh.write_text("{}")
        future = time.time() + 3600
        os.utime(fresh, (future, future))
        lines: list[str] = []
        outcomes = run_plan(plan, store, LocalExecutor(), fakes.FAKE_FNS, log=lines.append)
    finally:
        holder.kill()
        holder.wait()
    assert all(o.status == "done" for o in outcomes), outcomes
    assert _temp(root) == {live_tmp.relative_to(root).as_posix(), fresh.relative_to(root).as_posix()}
    assert any(line.startswith("removed 3 temporary file(s) left by a killed run") for line in lines), lines
