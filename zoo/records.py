"""Metric records carry a checksum of their own content, checked whenever a record is read.

A record is one JSON file (``downstream.api.evaluate``'s output, plus the runner's ``benchmark`` block).
``write_record`` adds ``record_sha256``: the sha256 of the record's canonical JSON (sorted keys, no spaces)
without that key. ``read_record`` recomputes it, so one changed digit, a torn file or broken JSON is an error
that names the file, never a wrong number in a table (issue 24.4). Records written before checksums existed
have none: they are read as *unsealed* (``Record.sealed`` is False) and readers say how many there were.

A record is also tied to its job. The runner writes ``benchmark.job_id`` into what it seals, and a reader that
reads the record *for* a job passes ``job_id``: a record that names another job (``cp records/A.json
records/B.json`` keeps a valid checksum) is a ``RecordError``, never B's number. A record that names no job
(written outside the runner, or before it named one) is read like an unsealed one: ``Record.job_id`` is None
and readers count it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.io import _json_default, atomic_write_json, stable_hash

__all__ = [
    "CHECKSUM_KEY",
    "RecordError",
    "Record",
    "record_checksum",
    "seal_record",
    "write_record",
    "read_record",
    "record_job_id",
]

CHECKSUM_KEY = "record_sha256"


class RecordError(ValueError):
    """A record that cannot be trusted: missing, not JSON, not a mapping, or not matching its checksum."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class Record:
    """A record read from ``path``; ``sealed`` is False for a legacy record without a checksum."""

    path: Path
    data: dict[str, Any]
    sealed: bool

    @property
    def job_id(self) -> str | None:
        """The runner job the record names (``benchmark.job_id``), or None."""
        return record_job_id(self.data)


def record_job_id(record: dict[str, Any]) -> str | None:
    """``record["benchmark"]["job_id"]``: the runner job the record was written for, or None."""
    bench = record.get("benchmark")
    job_id = bench.get("job_id") if isinstance(bench, dict) else None
    return str(job_id) if job_id is not None else None


def record_checksum(record: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``record`` without its ``record_sha256``."""
    return stable_hash({k: v for k, v in record.items() if k != CHECKSUM_KEY}, length=64)


def seal_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as it reads back from JSON (tuples as lists, numpy scalars as numbers), with its checksum."""
    plain = json.loads(json.dumps(record, default=_json_default))
    plain[CHECKSUM_KEY] = record_checksum(plain)
    return plain


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> dict[str, Any]:
    """Seal ``record`` and write it to ``path`` atomically; returns what was written."""
    sealed = seal_record(record)
    atomic_write_json(path, sealed)
    return sealed


def read_record(path: str | os.PathLike, *, require_checksum: bool = False, job_id: str | None = None) -> Record:
    """Read and verify the record at ``path``; any problem is a ``RecordError`` naming the file.

    ``job_id``: the job the record is read for; a record naming another job is an error (one naming none
    is returned, with ``Record.job_id`` None).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(path, "no such record") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(path, f"not valid JSON ({exc}): a torn or corrupted record") from exc
    if not isinstance(data, dict):
        raise RecordError(path, f"not a record (a JSON {type(data).__name__}, not an object)")
    stored = data.get(CHECKSUM_KEY)
    if stored is None:
        if require_checksum:
            raise RecordError(path, f"has no {CHECKSUM_KEY}")
        return _for_job(Record(path, data, sealed=False), job_id)
    actual = record_checksum(data)
    if stored != actual:
        raise RecordError(
            path,
            f"does not match its {CHECKSUM_KEY} (content {actual[:12]}…, sealed {str(stored)[:12]}…): "
            "changed since it was written",
        )
    return _for_job(Record(path, data, sealed=True), job_id)


def _for_job(record: Record, job_id: str | None) -> Record:
    named = record.job_id
    if job_id is not None and named is not None and named != str(job_id):
        raise RecordError(
            record.path,
            f"is the record of job {named}, not of job {job_id} (copied or moved from another job's record)",
        )
    return record
