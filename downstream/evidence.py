"""Evidence kept beside a metric record: the files a reader needs to re-check its numbers.

An evaluator names the files behind its metrics with ``ctx.keep(name, path, **origin)`` (detection: each
trial's ``coco_instances_results.json`` and the ground truth it was scored against). ``downstream.api.evaluate``
copies them next to the record it writes, into ``<record stem>.evidence/<name>``, before its work folder
is deleted, and lists them in the record::

    "evidence": {"trial0/coco_instances_results.json": {
        "file": "RECORD.evidence/trial0/coco_instances_results.json",   # relative to the record's folder
        "sha256": "…", "bytes": 12345,
        "origin": {"written_by": "detectron2 COCOEvaluator", "trial": 0, "seed": 0, "path": "/abs/where/it/was"}}}

Classification evaluators (kNN, linear) keep their test predictions the same way: ``keep_predictions`` writes
each image's five highest-scoring classes (best first, ties to the lower class index, as the metrics count
them) and its true label; ``rescore_predictions`` recomputes top-1 / top-5 from that file alone.

``file`` is null when nothing was kept (no ``out`` to keep it beside, or a file too large to copy: then
``origin.path`` and ``sha256`` still identify it). ``relocate_evidence`` moves a record's evidence when the
record itself is copied (runner store, ``leaderboard --publish``); ``check_evidence`` says what is missing
or altered.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.io import atomic_write_json, atomic_write_with, read_json, sha256_file

__all__ = [
    "KeptFile",
    "evidence_dir",
    "keep_evidence",
    "relocate_evidence",
    "check_evidence",
    "evidence_path",
    "keep_predictions",
    "rescore_predictions",
    "rescore_classification_record",
]

PREDICTIONS_FORMAT = "byol-bench classification predictions v1"


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


def keep_predictions(
    ctx: Any, name: str, scores: torch.Tensor, labels: torch.Tensor, *, split: str, **origin: Any
) -> Path:
    """Write the top-5 classes per image of ``scores`` (N × C) with ``labels`` to ``ctx.work_dir/name`` and keep
    it beside the record (``ctx.keep``). Ranking as ``downstream.knn.topk_accuracy`` counts hits: a stable
    descending sort, so ties go to the lower class index."""
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"predictions '{name}': scores {tuple(scores.shape)} do not match {len(labels)} labels")
    k = min(5, scores.shape[1])
    order = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices[:, :k]
    doc = {
        "format": PREDICTIONS_FORMAT,
        "split": split,
        "num_classes": int(scores.shape[1]),
        "labels": [int(v) for v in labels.cpu().tolist()],
        "top5": order.cpu().tolist(),
    }
    path = Path(ctx.work_dir) / name
    atomic_write_json(path, doc)
    ctx.keep(name, path, written_by=origin.pop("written_by", "byol-bench evaluator"), split=split, **origin)
    return path


def rescore_predictions(path: str | Path) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) recomputed from a kept predictions file alone."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{path}: not a {PREDICTIONS_FORMAT!r} file")
    labels, top = doc["labels"], doc["top5"]
    if not labels or len(labels) != len(top):
        raise ValueError(f"{path}: {len(labels)} labels but {len(top)} prediction rows")
    n = len(labels)
    return {
        "top1": sum(row[0] == y for row, y in zip(top, labels)) / n,
        "top5": sum(y in row[:5] for row, y in zip(top, labels)) / n,
    }


def rescore_classification_record(record_path: str | Path) -> dict[str, tuple[float, float]]:
    """``{metric: (recorded, re-scored)}`` for a kNN or linear record, from its kept prediction files alone.

    kNN: ``predictions_test_k{k}.json`` → ``top1_k{k}``, ``top5_k{k}``; linear: ``predictions_test.json`` →
    ``top1``, ``top5``; low-shot: ``predictions_test_draw{d}.json`` → ``top1_mean``, ``top5_mean``.
    Raises ``ValueError`` when the record kept no predictions or a kept file is missing or altered.
    """
    record_path = Path(record_path)
    rec = read_json(record_path)
    names = [n for n in rec.get("evidence") or {} if n.startswith("predictions_test")]
    if rec.get("evaluator") not in ("knn", "linear") or not names:
        raise ValueError(f"{record_path} is not a kNN or linear record with kept predictions")
    problems = check_evidence(rec, record_path.parent)
    if problems:
        raise ValueError(f"{record_path}: " + "; ".join(problems))
    metrics, out = rec["metrics"], {}
    draws: dict[str, list[float]] = {"top1": [], "top5": []}
    for name in sorted(names):
        got = rescore_predictions(evidence_path(rec, record_path.parent, name))
        if m := re.fullmatch(r"predictions_test_k(\d+)\.json", name):
            for key in ("top1", "top5"):
                out[f"{key}_k{m.group(1)}"] = (metrics.get(f"{key}_k{m.group(1)}"), got[key])
        elif re.fullmatch(r"predictions_test_draw\d+\.json", name):
            for key in ("top1", "top5"):
                draws[key].append(got[key])
        else:
            for key in ("top1", "top5"):
                out[key] = (metrics.get(key), got[key])
    for key, vals in draws.items():
        if vals:
            out[f"{key}_mean"] = (metrics.get(f"{key}_mean"), sum(vals) / len(vals))
    return out
