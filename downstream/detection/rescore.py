"""Re-score a detection record from the predictions kept beside it, with pycocotools alone.

``byol-bench rescore RECORD.json`` (or ``python -m downstream.detection.rescore RECORD.json``) reads the
record's ``evidence`` (``downstream.evidence``): the ground truth and each trial's
``coco_instances_results.json``, checks their sha256, scores every trial with pycocotools' ``COCOeval``
exactly as detectron2's ``COCOEvaluator`` derives its numbers (``AP AP50 AP75 APs APm APl`` = ``stats[0:6] × 100``,
``AP-<class>`` = mean precision at all areas and 100 detections × 100, NaN dropped; no detections → 0),
averages over trials and compares with the record's metrics. This module imports no detectron2.
kNN and linear records are re-scored the same way from their kept top-5 prediction files
(``downstream.evidence.rescore_classification_record``).

The same in five lines, for a reader without this package::

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO("RECORD.evidence/ground_truth.json")
    ev = COCOeval(gt, gt.loadRes("RECORD.evidence/trial0/coco_instances_results.json"), "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()   # AP of trial 0 = ev.stats[0] * 100
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from downstream.evidence import check_evidence, evidence_path, rescore_classification_record
from zoo.io import read_json, sha256_file
from zoo.records import RecordError, read_record

__all__ = [
    "PREDICTIONS",
    "GROUND_TRUTH",
    "aggregate_trials",
    "coco_box_metrics",
    "rescore_record",
    "compare_metrics",
    "main",
]

# evidence names: per trial ``trial<t>/coco_instances_results.json``, and the ground truth they were scored on
PREDICTIONS = "coco_instances_results.json"
GROUND_TRUTH = "ground_truth.json"
_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def aggregate_trials(per_trial: list[dict[str, float]]) -> dict[str, float]:
    """Mean over trials under each metric name, ``<name>_std`` (sample std, 0 for one trial), ``trials``.

    A metric missing from some trial (e.g. a size range with no detections) is averaged where present.
    """
    out: dict[str, float] = {}
    keys = sorted({k for m in per_trial for k in m})
    for k in keys:
        vals = [m[k] for m in per_trial if k in m]
        out[k] = statistics.fmean(vals)
        out[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    out["trials"] = float(len(per_trial))
    return out


def coco_box_metrics(gt_json: str | Path, results_json: str | Path) -> dict[str, float]:
    """COCO box AP (0–100 points) of the detections in ``results_json`` on ``gt_json``, as detectron2 reports it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = json.loads(Path(results_json).read_text(encoding="utf-8"))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(str(gt_json))
        names = [c["name"] for c in sorted(gt.loadCats(gt.getCatIds()), key=lambda c: c["id"])]
        if not dets:  # no detections: no true positives (detectron2 + downstream.detection.evaluation._BoxAP)
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, **{f"AP-{n}": 0.0 for n in names}}
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {k: float(ev.stats[i] * 100) for i, k in enumerate(_STATS) if ev.stats[i] >= 0}
    precisions = ev.eval["precision"]  # IoU × recall × class × area × max dets
    if len(names) > 1:
        for idx, name in enumerate(names):
            p = precisions[:, :, idx, 0, -1]
            p = p[p > -1]
            if p.size:
                out[f"AP-{name}"] = float(np.mean(p) * 100)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _trial_index(name: str) -> int | None:
    m = re.fullmatch(rf"trial(\d+)/{re.escape(PREDICTIONS)}", name)
    return int(m.group(1)) if m else None


def rescore_record(
    record_path: str | Path, gt_json: str | Path | None = None
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-trial metrics and their aggregate, recomputed from the files kept beside ``record_path``.

    ``gt_json`` replaces the kept ground truth (when it was too large to copy); its sha256 must still match.
    Raises ``ValueError`` naming the problem when a kept file is missing or altered.
    """
    record_path = Path(record_path)
    rec = read_json(record_path)
    evidence = rec.get("evidence") or {}
    trials = sorted((i, n) for n in evidence if (i := _trial_index(n)) is not None)
    if rec.get("evaluator") != "detection" or not trials:
        raise ValueError(f"{record_path} is not a detection record with kept predictions (no 'evidence' block)")
    problems = [p for p in check_evidence(rec, record_path.parent) if not (gt_json and p.startswith(GROUND_TRUTH))]
    if problems:
        raise ValueError(f"{record_path}: " + "; ".join(problems))
    if gt_json is None:
        gt = evidence_path(rec, record_path.parent, GROUND_TRUTH)
    else:
        gt = Path(gt_json)
        if sha256_file(gt) != evidence[GROUND_TRUTH]["sha256"]:
            raise ValueError(f"{gt} is not the ground truth the record was scored on (sha256 differs)")
    per_trial = [coco_box_metrics(gt, evidence_path(rec, record_path.parent, name)) for _, name in trials]
    return per_trial, aggregate_trials(per_trial)


def compare_metrics(
    recorded: dict[str, float], rescored: dict[str, float], rel_tol: float = 1e-9
) -> list[tuple[str, float | None, float | None]]:
    """``(metric, recorded, re-scored)`` for every metric that differs (or exists on one side only)."""
    out = []
    for k in sorted(set(recorded) | set(rescored)):
        a, b = recorded.get(k), rescored.get(k)
        if a is None or b is None or not math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9):
            out.append((k, a, b))
    return out


def _rescore_classification(path: str) -> bool:
    try:
        pairs = rescore_classification_record(path)
    except (ValueError, OSError, KeyError) as exc:
        print(f"{path}: cannot re-score: {exc}", file=sys.stderr)
        return False
    diff = [(k, a, b) for k, (a, b) in pairs.items() if a is None or not math.isclose(a, b, abs_tol=1e-9)]
    shown = ", ".join(f"{k} {b:.4f}" for k, (_, b) in sorted(pairs.items()))
    print(f"{path}: {shown} re-scored from the kept predictions; {'matches' if not diff else 'DIFFERS'}")
    for k, a, b in diff:
        print(f"    {k}: recorded {a}, re-scored {b}")
    return not diff


RESCORABLE = ("knn", "linear", "detection")  # the evaluators whose records keep predictions


def expand_records(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """Record files named by ``paths``: files as given; a folder means every record under it (a results
    folder's ``records/*.json``, or the ``*.json`` records of a records folder). Returns ``(to_rescore,
    skipped)``: folder records of evaluators that keep no predictions (geometry, nuisance …) are skipped.
    A path that does not exist, or a folder that holds no record, raises ``FileNotFoundError`` naming it."""
    files: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such record file or folder")
        found = sorted(path.glob("records/*.json")) or sorted(path.glob("*.json"))
        docs = {f: _parse(f) for f in found}
        # a file that does not parse is kept, to be reported as a bad record (it may be a torn record)
        records = [f for f, d in docs.items() if d is None or (isinstance(d, dict) and "evaluator" in d)]
        if not records:
            raise FileNotFoundError(f"{path}: a folder with no records (expected records/*.json or *.json)")
        for f in records:
            (files if docs[f] is None or docs[f]["evaluator"] in RESCORABLE else skipped).append(f)
    return files, skipped


def _parse(path: Path) -> Any:
    try:
        return read_json(path)
    except ValueError:
        return None


def _job_of(path: str | Path) -> str | None:
    """The job a runner's record file is for: ``<results>/records/<job id>.json``; None for any other path."""
    path = Path(path)
    return path.stem if path.parent.name == "records" else None


def main(argv: list[str] | None = None) -> int:
    """Re-score records from their kept predictions and compare with their metrics: detection with pycocotools
    alone, kNN and linear from their top-5 prediction files."""
    p = argparse.ArgumentParser(prog="byol-bench rescore", description=main.__doc__)
    p.add_argument(
        "records",
        nargs="+",
        help="record JSON files (with their RECORD.evidence/ folder), or folders: a results folder or its records/",
    )
    p.add_argument("--gt", default=None, help="ground-truth COCO json, when it was not copied beside the record")
    args = p.parse_args(argv)
    try:
        records, skipped = expand_records(args.records)
    except (FileNotFoundError, ValueError) as exc:
        print(f"byol-bench rescore: {exc}", file=sys.stderr)
        return 2
    ok = True
    failed = 0
    bad: list[str] = []
    counts = {"unsealed": 0, "unbound": 0}

    def check(path: str) -> bool:
        """The record's own checksum and job: one changed digit, a torn file or another job's record."""
        try:
            rec = read_record(path, job_id=_job_of(path))
        except RecordError as exc:
            print(f"BAD RECORD {exc}", file=sys.stderr)
            bad.append(path)
            return False
        counts["unsealed"] += int(not rec.sealed)
        counts["unbound"] += int(_job_of(path) is not None and rec.job_id is None)
        return True

    for path in map(str, skipped):  # not re-scorable, but their checksums (and jobs) are still checked
        check(path)
    for path in map(str, records):
        if not check(path) and not isinstance(_parse(Path(path)), dict):
            ok, failed = False, failed + 1  # nothing to re-score; go on with the other records
            continue
        good = path not in bad
        if read_json(path).get("evaluator") in ("knn", "linear"):
            good = _rescore_classification(path) and good
        else:
            try:
                per_trial, agg = rescore_record(path, args.gt)
            except (ValueError, OSError, KeyError) as exc:
                print(f"{path}: cannot re-score: {exc}", file=sys.stderr)
                good = False
            else:
                recorded: dict[str, Any] = read_json(path)["metrics"]
                diff = compare_metrics(recorded, agg)
                aps = ", ".join(f"{m.get('AP', 0.0):.4f}" for m in per_trial)
                status = "matches" if not diff else f"DIFFERS in {len(diff)} metric(s)"
                print(f"{path}: AP {agg.get('AP', math.nan):.4f} (trials: {aps}) re-scored with pycocotools; {status}")
                for k, a, b in diff[:20]:
                    print(f"    {k}: recorded {a}, re-scored {b}")
                good = good and not diff
        ok = ok and good
        failed += int(not good)
    if len(records) > 1 or skipped or bad:
        kinds = sorted({read_json(f)["evaluator"] for f in skipped})
        note = f"; {len(skipped)} skipped (no kept predictions: {', '.join(kinds)})" if skipped else ""
        note += f"; {len(bad)} BAD (checksum, JSON or another job's record, listed above)" if bad else ""
        print(f"rescore: {len(records) - failed} of {len(records)} records match their kept predictions{note}")
    unsealed, unbound = counts["unsealed"], counts["unbound"]
    if unsealed:
        print(f"note: {unsealed} record(s) have no checksum (written before records carried one): not verified")
    if unbound:
        print(f"note: {unbound} record(s) in a records/ folder name no job (benchmark.job_id): not checked against it")
    return 0 if ok and not bad else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
