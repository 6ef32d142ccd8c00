"""The results directory of a suite: one state file and one output per job, written atomically.

::

    <results>/plan.json                 the latest plan (suite + every job), for ``leaderboard RESULTS_DIR``
    <results>/jobs/<id>.json            state: status, error, traceback, wall time, attempts, host
    <results>/runs/<id>/artifact/       an artifact job's output (pretrain also keeps metrics.jsonl, checkpoints)
    <results>/records/<id>.json         an eval job's metric record (+ the ``benchmark`` block naming the job)
    <results>/locks/<id>.lock           held while a job runs: a second runner waits, then finds it done
    <results>/leaderboard/              tables and plots

Temporary names (``zoo.io``'s atomic writes: ``.<name>.<8 random>.tmp``; an artifact's ``.artifact.<8 random>/``
folder and ``atomic_replace_dir``'s ``.artifact.old-<pid>/``) are left behind by a kill -9. ``clean_stale_temp``
removes them when a runner starts: only those names, only older than its start, and only where no live
writer can be at work (the store lock for ``plan.json`` and ``jobs/``; the job's lock for its record, kept
evidence and run folder), so a second runner on the same directory is never disturbed.

A job is done only when its final file exists (``artifact/meta.json`` or the record), and that file is
the last thing written, atomically; so a runner killed at any moment re-runs only unfinished jobs. A record
must also pass its own checksum (``zoo.records``) and name this job (``benchmark.job_id``): one that was
edited, torn or corrupted, or copied from another job's record, is redone.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from zoo.io import atomic_write_json, read_json, utc_now
from zoo.records import RecordError, read_record

from .plan import Job

__all__ = ["Store"]

_TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # zoo.io's atomic writes: mkstemp(prefix=".<name>.", suffix=".tmp")
_TEMP_DIR = re.compile(r"\.artifact\.(?:[a-z0-9_]{8}|old-[0-9]+)")  # save_artifact's temp, atomic_replace_dir's old
_RECORD_TEMP = re.compile(r"\.(.+)\.json\.[a-z0-9_]{8}\.tmp")  # records/.<job id>.json.<8>.tmp


class Store:
    """Paths, states and locks of one results directory (safe to share between runners)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # paths ---------------------------------------------------------------------------------------------
    def run_dir(self, job_id: str) -> Path:
        return self.root / "runs" / job_id

    def artifact_dir(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "artifact"

    def record_path(self, job_id: str) -> Path:
        return self.root / "records" / f"{job_id}.json"

    def state_path(self, job_id: str) -> Path:
        return self.root / "jobs" / f"{job_id}.json"

    def output_path(self, job: Job) -> Path:
        """The file whose existence means ``job`` is done."""
        if job.kind == "eval":
            return self.record_path(job.id)
        return self.artifact_dir(job.id) / "meta.json"

    # state ---------------------------------------------------------------------------------------------
    def is_done(self, job: Job) -> bool:
        """The job's final file exists and, for an eval job, is a record that passes its checksum."""
        if job.kind == "eval":
            return self.record_problem(job) is None
        return self.output_path(job).is_file()

    def record_problem(self, job: Job) -> str | None:
        """Why the record of eval ``job`` cannot be used (missing, not JSON, checksum mismatch, another job's
        record), or None."""
        try:
            read_record(self.record_path(job.id), job_id=job.id)
        except RecordError as exc:
            return str(exc)
        return None

    def bad_records(self, jobs: list[Job]) -> list[str]:
        """``path: problem`` for every eval job whose record exists but cannot be trusted (it will be redone)."""
        return [
            problem
            for job in jobs
            if job.kind == "eval" and self.record_path(job.id).exists() and (problem := self.record_problem(job))
        ]

    def unbound_records(self, jobs: list[Job]) -> int:
        """How many usable records of ``jobs`` name no job (legacy: read like unsealed records, counted)."""
        n = 0
        for job in jobs:
            if job.kind == "eval" and self.record_path(job.id).is_file():
                try:
                    n += int(read_record(self.record_path(job.id), job_id=job.id).job_id is None)
                except RecordError:
                    pass
        return n

    def read_state(self, job_id: str) -> dict[str, Any] | None:
        path = self.state_path(job_id)
        try:
            return read_json(path) if path.is_file() else None
        except ValueError:  # a state file is informative only; never let a bad one stop a run
            return None

    def status(self, job: Job) -> str:
        """``done`` | ``failed`` | ``blocked`` | ``preempted`` | ``running`` (maybe stale) | ``missing``."""
        if self.is_done(job):
            return "done"
        state = self.read_state(job.id)
        known = ("failed", "blocked", "preempted", "running")
        return state["status"] if state and state.get("status") in known else "missing"

    def write_state(self, job: Job, status: str, **fields: Any) -> dict[str, Any]:
        """Update ``jobs/<id>.json`` (read-modify-write under the store lock)."""
        with self.store_lock():
            state = self.read_state(job.id) or {"job": job.to_dict(), "attempts": 0}
            state.update(fields)
            state["status"] = status
            state["updated"] = utc_now()
            if status == "running":
                state["attempts"] = int(state.get("attempts", 0)) + 1
                state.update(host=socket.gethostname(), pid=os.getpid(), started=utc_now(), error=None)
                state.pop("traceback", None)
            atomic_write_json(self.state_path(job.id), state)
        return state

    def write_plan(self, plan_dict: dict[str, Any]) -> None:
        with self.store_lock():
            atomic_write_json(self.root / "plan.json", plan_dict)

    def read_plan(self) -> dict[str, Any] | None:
        path = self.root / "plan.json"
        return read_json(path) if path.is_file() else None

    # locks ---------------------------------------------------------------------------------------------
    def store_lock(self, timeout: float = 60.0) -> FileLock:
        """Short critical sections (state and plan updates)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".store.lock"), timeout=timeout)

    @contextmanager
    def job_lock(self, job_id: str, wait: bool = True) -> Iterator[bool]:
        """Hold ``locks/<id>.lock`` while a job runs; yields False when ``wait`` is off and it is taken."""
        path = self.root / "locks" / f"{job_id}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=-1 if wait else 0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    # stale temporary files ----------------------------------------------------------------------------
    def clean_stale_temp(self, started: float) -> list[tuple[Path, int]]:
        """Remove the temporary files and folders a killed runner left here; returns ``(path, bytes)`` of each.

        Only this package's temporary names, only those last changed before ``started`` (this runner's start),
        and only where no live writer can be at work: ``plan.json``'s and ``jobs/``'s under the store lock
        (every writer of them holds it), a job's record, evidence and run folder while its job lock is free
        (a job of another runner, running now, holds it: its files are left alone).
        """
        removed: list[tuple[Path, int]] = []
        if not self.root.is_dir():
            return removed

        def take(path: Path) -> None:
            try:
                if path.is_symlink() or path.lstat().st_mtime >= started:
                    return
                if path.is_dir():
                    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
                    shutil.rmtree(path)
                else:
                    size = path.stat().st_size
                    path.unlink()
            except OSError:  # gone meanwhile, or not ours to remove: leave it
                return
            removed.append((path, size))

        with self.store_lock():
            for folder in (self.root, self.root / "jobs"):
                for path in _entries(folder):
                    if path.is_file() and _TEMP_FILE.fullmatch(path.name):
                        take(path)
        for job_id, paths in sorted(self._job_temp().items()):
            with self.job_lock(job_id, wait=False) as free:
                if free:
                    for path in paths:
                        take(path)
        return removed

    def _job_temp(self) -> dict[str, list[Path]]:
        """job id -> its temporary files and folders (records/, records/<id>.evidence/, runs/<id>/)."""
        out: dict[str, list[Path]] = {}
        records = self.root / "records"
        for path in _entries(records):
            if path.is_file() and (m := _RECORD_TEMP.fullmatch(path.name)):
                out.setdefault(m.group(1), []).append(path)
            elif path.is_dir() and not path.is_symlink() and path.name.endswith(".evidence"):
                found = [f for f in path.rglob(".*.tmp") if f.is_file() and _TEMP_FILE.fullmatch(f.name)]
                if found:
                    out.setdefault(path.name[: -len(".evidence")], []).extend(found)
        for run in _entries(self.root / "runs"):
            if not run.is_dir() or run.is_symlink():
                continue
            found = []
            for folder, dirs, files in os.walk(run):
                here = Path(folder)
                if here == run:  # an artifact's temp folder: the folder goes, not what is in it
                    temp = [d for d in dirs if _TEMP_DIR.fullmatch(d)]
                    found += [here / d for d in temp]
                    dirs[:] = [d for d in dirs if d not in temp]
                found += [here / f for f in files if _TEMP_FILE.fullmatch(f)]
            if found:
                out.setdefault(run.name, []).extend(found)
        return out

    def describe_machine(self) -> str:
        return f"{socket.gethostname()} ({platform.platform()})"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:  # missing, or not a folder
        return []
