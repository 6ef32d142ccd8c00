"""Evidence kept beside a metric record: the files a reader needs to re-check its numbers.

An evaluator names the files behind its metrics with ``ctx.keep(name, path, **origin)`` (detection: each
trial's ``coco_instances_results.json`` and the ground truth it was scored against). ``downstream.api.evaluate``
copies them next to the record it writes, into ``<record stem>.evidence/<name>``, before its work folder
is deleted, and lists them in the record::

    "evidence": {"trial0/coco_instances_results.json": {
        "file": "RECORD.evidence/trial0/coco_instances_results.json",   # relative to the record's folder
        "sha256": "…", "bytes": 12345,
        "origin": {"written_by": "detectron2 COCOEvaluator", "trial": 0, "seed": 0, "path": "/abs/where/it/was"}}}

``file`` is null when nothing was kept (no ``out`` to keep it beside, or a file too large to copy: then
``origin.path`` and ``sha256`` still identify it). ``relocate_evidence`` moves a record's evidence when the
record itself is copied (runner store, ``leaderboard --publish``); ``check_evidence`` says what is missing
or altered.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.io import atomic_write_with, sha256_file

__all__ = ["KeptFile", "evidence_dir", "keep_evidence", "relocate_evidence", "check_evidence", "evidence_path"]


@dataclass(frozen=True)
class KeptFile:
    """A file an evaluator asked to keep: where it is now, and where it came from."""

    path: Path
    origin: dict[str, Any] = field(default_factory=dict)
    copy: bool = True  # False: record its hash and origin only (too large to copy beside every record)


def evidence_dir(record_path: str | Path) -> Path:
    """``runs/x/record.json`` → ``runs/x/record.evidence``."""
    record_path = Path(record_path)
    return record_path.with_name(f"{record_path.stem}.evidence")


def _copy(src: Path, dst: Path) -> None:
    atomic_write_with(dst, lambda tmp: shutil.copyfile(src, tmp))


def keep_evidence(files: dict[str, KeptFile], record_path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Copy ``files`` beside ``record_path`` (when given) and return the record's ``evidence`` block."""
    out: dict[str, dict[str, Any]] = {}
    for name, kept in sorted(files.items()):
        if not kept.path.is_file():
            raise FileNotFoundError(f"evidence '{name}': the evaluator asked to keep {kept.path}, which is missing")
        entry: dict[str, Any] = {
            "file": None,
            "sha256": sha256_file(kept.path),
            "bytes": kept.path.stat().st_size,
            "origin": {**kept.origin, "path": str(kept.path.resolve())},
        }
        if record_path is not None and kept.copy:
            dst = evidence_dir(record_path) / name
            _copy(kept.path, dst)
            entry["file"] = dst.relative_to(Path(record_path).parent).as_posix()
        out[name] = entry
    return out


def evidence_path(record: dict[str, Any], record_dir: str | Path, name: str) -> Path:
    """The kept file ``name`` of ``record`` (read from ``record_dir``); an error if it was not kept."""
    entry = (record.get("evidence") or {}).get(name)
    if entry is None:
        raise KeyError(f"the record has no evidence '{name}' (has: {', '.join(record.get('evidence') or {}) or '-'})")
    if not entry.get("file"):
        raise FileNotFoundError(f"evidence '{name}' was not kept beside the record (origin: {entry.get('origin')})")
    return Path(record_dir) / entry["file"]


def relocate_evidence(record: dict[str, Any], src_dir: str | Path, dst_record: str | Path) -> dict[str, Any]:
    """Copy the kept files of ``record`` (whose paths are relative to ``src_dir``) beside ``dst_record``.

    Returns a copy of ``record`` whose ``evidence`` paths are relative to ``dst_record``'s folder.
    """
    evidence = record.get("evidence")
    if not evidence:
        return dict(record)
    src_dir, dst_record = Path(src_dir), Path(dst_record)
    moved: dict[str, dict[str, Any]] = {}
    for name, entry in evidence.items():
        entry = dict(entry)
        if entry.get("file"):
            src = src_dir / entry["file"]
            dst = evidence_dir(dst_record) / name
            if src.resolve() != dst.resolve():
                _copy(src, dst)
            entry["file"] = dst.relative_to(dst_record.parent).as_posix()
        moved[name] = entry
    return {**record, "evidence": moved}


def check_evidence(record: dict[str, Any], record_dir: str | Path) -> list[str]:
    """Problems with the kept files of ``record``: not kept, missing, or a different sha256 (empty: all good)."""
    problems = []
    for name, entry in (record.get("evidence") or {}).items():
        if not entry.get("file"):
            problems.append(f"{name}: not kept beside the record")
            continue
        path = Path(record_dir) / entry["file"]
        if not path.is_file():
            problems.append(f"{name}: {path} is missing")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{name}: {path} does not match the recorded sha256")
    return problems
