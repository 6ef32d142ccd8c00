"""Run a plan's missing jobs: here, in a local process pool, or on Slurm through submitit.

Every executor calls ``execute_job`` for one job, wherever it runs. It takes the job's lock (a second
runner on the same results directory waits, then finds the job done), skips it if its output exists,
records ``running``, calls the stage, and records ``done`` or ``failed`` with the error and traceback. A
failure never propagates: the jobs that depend on it are marked ``blocked`` and everything else runs.
Two exceptions: a full disk stops the run, in one line naming the file and the room it needed; and the
pool's workers end with the runner, whether it is stopped by SIGTERM or killed, and share the CPUs out
(``worker_threads``: N workers on C CPUs get C // N threads each, unless ``OMP_NUM_THREADS`` says). A
pretraining stopped by a signal after its checkpoint is ``preempted``, not failed: it resumes on the next run,
and under submitit ``RequeueOnPreemption`` requeues it.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downstream.evidence import relocate_evidence
from zoo.io import DiskFullError, disk_full_error, is_disk_full, read_json
from zoo.logs import job_log
from zoo.records import write_record

from .plan import Job, Plan
from .stages import StageFns, default_stage_fns
from .store import Store

__all__ = ["JobOutcome", "execute_job", "run_plan", "LocalExecutor", "SubmititExecutor", "JOB_LOG", "worker_threads"]

JOB_LOG = "job.log"  # runs/<job>/job.log: everything libraries log, print or warn while the job runs


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str  # "done" (ran now) | "cached" | "failed" | "blocked" | "preempted" (stopped by a signal, resumable)
    error: str | None = None
    wall_time_s: float = 0.0
    disk_full: bool = False  # ENOSPC: the runner starts nothing more, every job would fail the same way


def _upstream_artifact(store: Store, job: Job) -> str:
    if job.deps:
        return str(store.artifact_dir(job.deps[0]))
    return str(job.spec["artifact"])  # an existing artifact directory, or "raw-pixels"


def execute_job(store_root: str, job_dict: dict[str, Any], fns: StageFns | None = None) -> JobOutcome:
    """Run one job if its output is missing; never raises for a job failure (it is recorded instead).

    A full disk is a failure like any other, in one line naming the file and the space it needed; when even
    the job's state file cannot be written (the job then still reads ``running``), the line says so.
    """
    store = Store(store_root)
    job = Job.from_dict(job_dict)
    try:
        return _execute_job(store, job, fns or default_stage_fns())
    except OSError as exc:  # the lock or a state write, outside the stage: the job could not be recorded
        if not is_disk_full(exc):
            raise
        error = f"{_disk_full_line(exc, store.state_path(job.id))}; the state of job {job.id} could not be written"
        return JobOutcome(job.id, "failed", error, disk_full=True)


def _disk_full_line(exc: BaseException, where: Path) -> str:
    """One line for a full disk: ``zoo.io`` writes (and pretraining's) already say it in one line naming the
    file; a bare ``OSError`` gets its file (or ``where``) named with the free space there."""
    if isinstance(exc, OSError) and not isinstance(exc, DiskFullError):
        return str(disk_full_error(exc.filename or where))
    return str(exc)


def _execute_job(store: Store, job: Job, fns: StageFns) -> JobOutcome:
    with store.job_lock(job.id):
        if store.is_done(job):
            return JobOutcome(job.id, "cached")
        missing = [d for d in job.deps if not (store.artifact_dir(d) / "meta.json").is_file()]
        if missing:
            error = f"upstream job {missing[0]} has no artifact (it failed or did not run)"
            store.write_state(job, "blocked", error=error)
            return JobOutcome(job.id, "blocked", error)
        if job.plan_error:
            store.write_state(job, "failed", error=f"cannot resolve inputs: {job.plan_error}", wall_time_s=0.0)
            return JobOutcome(job.id, "failed", job.plan_error)
        store.write_state(job, "running")
        start = time.time()
        run_dir = store.run_dir(job.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if job.kind == "eval":
                if fns.eval is None:
                    raise RuntimeError("no eval stage function configured")
                with job_log(run_dir / JOB_LOG):  # libraries' logs, prints and warnings: the job's log file
                    record = fns.eval(job, _upstream_artifact(store, job), run_dir)
                if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
                    raise TypeError(f"eval stage returned {type(record).__name__}, not a record with 'metrics'")
                # kept files (predictions) are relative to the stage's work folder: copy them beside the record
                record = relocate_evidence(record, run_dir, store.record_path(job.id))
                record["benchmark"] = {
                    "job_id": job.id,
                    "variant": job.variant,
                    "seed": job.seed,
                    "group": job.group,
                    "upstream": job.deps[0] if job.deps else None,
                }
                write_record(store.record_path(job.id), record)  # sealed with its checksum; last: marks it done
            else:
                fn = fns.artifact.get(job.kind)
                if fn is None:
                    raise RuntimeError(f"no stage function for job kind '{job.kind}'")
                with job_log(run_dir / JOB_LOG):
                    fn(job, run_dir)
                meta = store.artifact_dir(job.id) / "meta.json"
                if not meta.is_file():
                    raise RuntimeError(f"the {job.kind} stage finished without writing {meta}")
                read_json(meta)
        except BaseException as exc:  # noqa: BLE001 - recorded; KeyboardInterrupt is re-raised below
            wall = time.time() - start
            stopped = _preemption(exc)
            if stopped is not None:  # checkpointed and resumable: not a failure (submitit requeues it)
                error = f"pre-empted: {stopped}"
                store.write_state(job, PREEMPTED, error=error, wall_time_s=wall)
                if isinstance(exc, KeyboardInterrupt | SystemExit):  # submitit's handler requeued it and exits
                    raise
                return JobOutcome(job.id, PREEMPTED, error, wall)
            full = is_disk_full(exc)
            error = _disk_full_line(exc, run_dir) if full else f"{type(exc).__name__}: {exc}"
            try:
                store.write_state(job, "failed", error=error, traceback=traceback.format_exc(), wall_time_s=wall)
            except OSError as state_exc:  # not a second traceback chained to the first: one line says both
                full = full or is_disk_full(state_exc)
                error += f"; and job {job.id} could not be marked failed ({state_exc}): its state still says running"
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return JobOutcome(job.id, "failed", error, wall, disk_full=full)
        wall = time.time() - start
        try:
            store.write_state(job, "done", wall_time_s=round(wall, 2), error=None)
        except OSError as exc:  # the job's output exists, and that is what marks it done; the state is a note
            if not is_disk_full(exc):
                raise
            return JobOutcome(job.id, "done", _disk_full_line(exc, store.state_path(job.id)), wall, disk_full=True)
        return JobOutcome(job.id, "done", None, wall)


PREEMPTED = "preempted"
_NOT_DONE = ("failed", "blocked", PREEMPTED)  # a dependent of a job that ended so cannot run


def _preemption(exc: BaseException) -> BaseException | None:
    """The ``pretrain.train.Preempted`` behind ``exc`` (itself, or what it was raised from or during), or None.

    A pre-empted pretraining raises it after its checkpoint is written; submitit's requeue handler, called
    while it propagates, raises ``SystemExit`` from within it. ``pretrain.train`` is not imported here: if it
    was never imported, nothing can have raised its exception.
    """
    module = sys.modules.get("pretrain.train")
    cls = getattr(module, "Preempted", None)
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None or cls is None:
            return None
        if isinstance(seen, cls):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _not_started(job: Job) -> JobOutcome:
    return JobOutcome(job.id, "blocked", "not started: the disk is full")


def _blocked(store: Store, job: Job, failed_dep: str) -> JobOutcome:
    error = f"upstream job {failed_dep} failed"
    store.write_state(job, "blocked", error=error)
    return JobOutcome(job.id, "blocked", error)


class LocalExecutor:
    """Sequential in this process (``workers=1``), or a pool of ``workers`` spawned processes."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def run(self, store: Store, jobs: list[Job], fns: StageFns, log: Callable[[str], None] = print) -> list[JobOutcome]:
        outcomes: dict[str, JobOutcome] = {}
        if self.workers <= 1:
            for i, job in enumerate(jobs, 1):
                bad = [d for d in job.deps if d in outcomes and outcomes[d].status in _NOT_DONE]
                if any(o.disk_full for o in outcomes.values()):
                    outcomes[job.id] = _not_started(job)
                    continue
                if bad:
                    outcomes[job.id] = _blocked(store, job, bad[0])
                else:
                    log(f"[{i}/{len(jobs)}] {job.describe()} (job {job.id})")
                    outcomes[job.id] = execute_job(str(store.root), job.to_dict(), fns)
                _log_outcome(outcomes[job.id], log)
            return [outcomes[j.id] for j in jobs]
        return self._run_pool(store, jobs, fns, log)

    def _run_pool(self, store: Store, jobs: list[Job], fns: StageFns, log: Callable[[str], None]) -> list[JobOutcome]:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        outcomes: dict[str, JobOutcome] = {}
        pending = list(jobs)
        # one single-worker pool per running job: a worker that dies (OOM killer, kill -9) breaks only its own
        # pool. A shared pool, once broken, fails every job still in it and refuses new ones, so one killed job
        # stopped its siblings mid-run and the rest of the suite with them.
        running: dict[Any, tuple[Job, ProcessPoolExecutor]] = {}
        ids = {j.id for j in jobs}
        context = mp.get_context("spawn")
        threads = worker_threads(self.workers)

        def start(job: Job) -> None:
            # workers die with the runner: a parent-death signal in each (kill -9 of the runner), and SIGTERM of
            # the runner stops the pools before exiting (issue 24.3: orphans idled at ~1 GB each, forever)
            pool = ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), threads))
            running[pool.submit(execute_job, str(store.root), job.to_dict(), fns)] = (job, pool)

        with _sigterm_exits():
            try:
                while pending or running:
                    if any(o.disk_full for o in outcomes.values()):  # start nothing more; let the running finish
                        for job in pending:
                            outcomes[job.id] = _not_started(job)
                        pending = []
                    for job in list(pending):
                        deps = [d for d in job.deps if d in ids]
                        bad = [d for d in deps if d in outcomes and outcomes[d].status in _NOT_DONE]
                        if bad:
                            pending.remove(job)
                            outcomes[job.id] = _blocked(store, job, bad[0])
                            _log_outcome(outcomes[job.id], log)
                        elif all(d in outcomes for d in deps) and len(running) < self.workers:
                            pending.remove(job)
                            log(f"[start] {job.describe()} (job {job.id})")
                            start(job)
                    if not running:
                        continue
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        job, pool = running.pop(fut)
                        try:
                            outcomes[job.id] = fut.result()
                        except Exception as exc:  # noqa: BLE001 - a worker crashed hard (e.g. killed)
                            outcomes[job.id] = JobOutcome(job.id, "failed", f"worker died: {exc}")
                            store.write_state(job, "failed", error=outcomes[job.id].error)
                        pool.shutdown(wait=True)
                        _log_outcome(outcomes[job.id], log)
            except BaseException:  # SIGTERM (SystemExit), Ctrl-C, or a bug here: never leave workers behind
                stopped = _stop_pools([pool for _, pool in running.values()])
                log(f"runner stopped: {stopped} worker process(es) terminated; run the same command again to resume")
                raise
        return [outcomes[j.id] for j in jobs]


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` pool processes: the usable CPUs shared out, at least one.

    Left alone, torch gives every spawned worker a thread per core, so two workers on two cores ran four
    spinning OpenMP threads: a supervised epoch took 312 s instead of 53 s (2-core CPU, 2026-12-07).
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, workers))


def _init_worker(parent_pid: int, threads: int) -> None:
    """Pool worker initializer: die with the runner (``_die_with_parent``) and use ``threads`` threads.

    A user's ``OMP_NUM_THREADS`` wins. Otherwise it is set here, before the job imports torch, so torch and
    the processes the job starts (torchrun) inherit it; a torch already imported is told directly.
    """
    _die_with_parent(parent_pid)
    if "OMP_NUM_THREADS" in os.environ:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: end this worker when the runner that spawned it dies, however it dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` asks the kernel to send SIGTERM when the parent exits (kill -9
    included); then the parent is checked once, since it may have died before the signal was armed.
    Elsewhere a daemon thread polls the parent instead.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (unusual libc): fall back to polling below
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the runner is already gone
        os._exit(1)


def _watch_parent(parent_pid: int, every_s: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While the pool runs, SIGTERM raises ``SystemExit(143)`` in the runner, so it can stop its workers first
    (the default action would end the runner at once and orphan them). Only the main thread can do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _stop_pools(pools: list[Any], grace_s: float = 20.0) -> int:
    """Cancel what has not started and terminate the pools' workers (SIGTERM to all, then SIGKILL to those
    still alive after ``grace_s``, one grace for all of them).

    The grace lets a pretraining worker finish its step and write its checkpoint on SIGTERM (``pretrain``
    exits 75 then), within Slurm's default 30 s between SIGTERM and SIGKILL.
    """
    procs = [p for pool in pools for p in (getattr(pool, "_processes", None) or {}).values()]  # shutdown forgets
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.time() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.time()))
        if p.is_alive():
            p.kill()
            p.join(1.0)
    return len(procs)


class RequeueOnPreemption:
    """``execute_job`` as submitit runs it: a ``submitit.helpers.Checkpointable``-style callable.

    On pre-emption or time-out Slurm sends submitit's signal (USR2, ``--signal=USR2@90``); submitit's handler
    (``submitit/core/job_environment.py: SignalHandler.checkpoint_and_try_requeue``) calls ``checkpoint`` of
    the submitted callable and requeues what it returns, as Lightning's SLURM plugin requeues on its signal.
    Ours resubmits the same job. Pretraining receives the signal first (``pretrain.train`` handles it:
    finishes the step, writes its checkpoint, then passes the signal on to submitit's handler), so the
    requeued job resumes from that step; any other job starts over.

    Slurm's plain SIGTERM (its default pre-emption signal, or USR1) is only logged by submitit, so pretraining
    stops after its checkpoint and the job comes back ``preempted``: then ``__call__`` itself asks submitit's
    handler to requeue it, as if submitit's signal had come. Either way the job's state is ``preempted``,
    never ``failed``.
    """

    def __call__(self, store_root: str, job_dict: dict[str, Any], fns: StageFns | None = None) -> JobOutcome:
        outcome = execute_job(store_root, job_dict, fns)
        if outcome.status == PREEMPTED:
            _submitit_requeue()  # requeues and exits (SystemExit) inside a submitit job; else returns
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The same call, resubmitted (``submitit.helpers.DelayedSubmission``)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _submitit_requeue() -> None:
    """Inside a submitit job: checkpoint the submitted call and requeue it through submitit's own handler of
    its pre-emption signal (``SignalHandler.checkpoint_and_try_requeue``: it resubmits ``checkpoint()``'s
    call, counts time-outs, requeues with the cluster's API, ``JobEnvironment._requeue``, and exits). It raises
    submitit's ``UncompletedJobError`` where no requeue is possible, which ends the job as failed. Outside
    a submitit job it does nothing."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    try:
        from submitit.core.job_environment import JobEnvironment, SignalHandler
        from submitit.core.utils import DelayedSubmission
    except ImportError:
        return
    usr_sig = JobEnvironment._usr_sig()
    installed = signal.getsignal(usr_sig)
    handler = getattr(installed, "__self__", None)
    if not isinstance(handler, SignalHandler):  # not installed by submitit here: build one as submitit does
        env = JobEnvironment()
        handler = SignalHandler(env, env.paths, DelayedSubmission.load(env.paths.submitted_pickle))
    handler.checkpoint_and_try_requeue(usr_sig)


class SubmititExecutor:
    """submitit: Slurm array jobs per stage (artifacts, then evaluations), or its local/debug clusters."""

    def __init__(
        self,
        folder: str | Path,
        cluster: str | None = None,
        *,
        partition: str | None = None,
        gpus_per_job: int = 0,
        cpus_per_job: int = 4,
        mem_gb: float | None = None,
        timeout_min: int = 240,
        eval_timeout_min: int = 60,
        array_parallelism: int = 32,
        slurm_additional: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.cluster = cluster
        self.partition = partition
        self.gpus_per_job = gpus_per_job
        self.cpus_per_job = cpus_per_job
        self.mem_gb = mem_gb
        self.timeout_min = timeout_min
        self.eval_timeout_min = eval_timeout_min
        self.array_parallelism = array_parallelism
        self.slurm_additional = dict(slurm_additional or {})

    def _executor(self, gpus: int, timeout_min: int, name: str) -> Any:
        import submitit

        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)
        params: dict[str, Any] = {
            "timeout_min": timeout_min,
            "gpus_per_node": gpus,
            "tasks_per_node": 1,  # multi-GPU pretraining is one task that runs torchrun itself
            "cpus_per_task": self.cpus_per_job,
            "name": name,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.slurm_additional:
            params["slurm_additional_parameters"] = self.slurm_additional
        ex.update_parameters(**params)
        return ex

    def limits(self, job: Job) -> tuple[int, int, str]:
        """(GPUs, time limit in minutes, job name) of the Slurm array ``job`` goes to."""
        is_eval = job.kind == "eval"
        timeout = self.eval_timeout_min if is_eval else self.timeout_min
        return job.gpus, timeout, f"byol-bench-{'eval' if is_eval else 'artifact'}"

    def run(self, store: Store, jobs: list[Job], fns: StageFns, log: Callable[[str], None] = print) -> list[JobOutcome]:
        outcomes: dict[str, JobOutcome] = {}
        waves = [[j for j in jobs if j.kind != "eval"], [j for j in jobs if j.kind == "eval"]]
        for wave in waves:
            runnable: list[Job] = []
            for job in wave:
                bad = [d for d in job.deps if d in outcomes and outcomes[d].status in _NOT_DONE]
                if bad:
                    outcomes[job.id] = _blocked(store, job, bad[0])
                    _log_outcome(outcomes[job.id], log)
                else:
                    runnable.append(job)
            by_limits: dict[tuple[int, int, str], list[Job]] = {}
            for job in runnable:  # one array per (GPU count, time limit)
                by_limits.setdefault(self.limits(job), []).append(job)
            submitted = []
            for (gpus, timeout, name), group in by_limits.items():
                ex = self._executor(gpus, timeout, name)
                with ex.batch():
                    futures = [ex.submit(RequeueOnPreemption(), str(store.root), j.to_dict(), fns) for j in group]
                submitted += list(zip(group, futures))
                log(f"submitted {len(group)} job(s) ({gpus} GPU, {timeout} min) to submitit {self.cluster or 'auto'}")
            for job, fut in submitted:
                try:
                    outcomes[job.id] = fut.result()
                except Exception as exc:  # noqa: BLE001 - the scheduler killed it (time limit, node failure)
                    outcomes[job.id] = JobOutcome(job.id, "failed", f"{type(exc).__name__}: {exc}"[:2000])
                    store.write_state(job, "failed", error=outcomes[job.id].error)
                _log_outcome(outcomes[job.id], log)
        return [outcomes[j.id] for j in jobs]


def _log_outcome(o: JobOutcome, log: Callable[[str], None]) -> None:
    if o.status == "done":
        log(f"    done in {o.wall_time_s:.1f}s")
    elif o.status == "cached":
        log("    cached")
    else:
        log(f"    {o.status.upper()}: {o.error}")


def run_plan(
    plan: Plan,
    store: Store,
    executor: LocalExecutor | SubmititExecutor | None = None,
    fns: StageFns | None = None,
    log: Callable[[str], None] = print,
    only: set[str] | None = None,
) -> list[JobOutcome]:
    """Run every job of ``plan`` whose output is missing; return one outcome per job (cached included).

    ``only``: run just these variants' jobs (the whole plan is still recorded, for the leaderboard).
    A full disk stops the run: the jobs not yet started are left, and ``DiskFullError`` says which file
    needed how much room.
    """
    fns = fns or default_stage_fns()
    executor = executor or LocalExecutor()
    started = time.time()
    removed = store.clean_stale_temp(started)  # a killed runner's temporary files (not those of a live one)
    if removed:
        size = sum(n for _, n in removed)
        names = ", ".join(str(p) for p, _ in removed[:3]) + (f" (+{len(removed) - 3} more)" if len(removed) > 3 else "")
        log(f"removed {len(removed)} temporary file(s) left by a killed run ({size / 2**20:.1f} MiB): {names}")
    store.write_plan(plan.to_dict())
    jobs = [j for j in plan.jobs if only is None or j.variant in only]
    for problem in store.bad_records(jobs):  # edited, torn, corrupted or another job's: never cached, never shown
        log(f"bad record, its job runs again: {problem}")
    unbound = store.unbound_records(jobs)
    if unbound:
        log(f"note: {unbound} record(s) name no job (written before records named theirs): not checked against it")
    todo = [j for j in jobs if not store.is_done(j)]
    cached = [JobOutcome(j.id, "cached") for j in jobs if store.is_done(j)]
    if not todo:
        log(f"all {len(jobs)} jobs are done (cached): nothing to run")
        return cached
    log(f"{len(todo)} of {len(jobs)} jobs to run ({len(cached)} cached)")
    outcomes = cached + executor.run(store, todo, fns, log)
    full = next((o for o in outcomes if o.disk_full), None)
    if full is not None:  # nothing more can be written: end here, in one line (byol-bench prints it)
        raise DiskFullError(errno.ENOSPC, full.error, None)
    return outcomes
