"""The runner keeps an eval stage's evidence (detection predictions) beside the store's record and publishes it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import fakes

from benchmarks.runner.executors import LocalExecutor, run_plan
from benchmarks.runner.plan import make_plan
from benchmarks.runner.stages import StageFns
from benchmarks.runner.store import Store
from benchmarks.runner.suite import load_suite
from downstream.evidence import KeptFile, check_evidence, keep_evidence
from zoo.io import read_json

SUITE = """
name: toy-evidence
seeds: [0]
variants:
  a: {kind: supervised, overrides: [quality=0.9]}
evaluations:
  - {evaluator: detection, dataset: digits-det, name: det}
"""


def eval_with_predictions(job, artifact, work_dir: Path) -> dict:
    """Like ``run_eval``: the record is written to ``work_dir/record.json`` with its evidence beside it."""
    preds = work_dir / "detection" / "trial0" / "inference" / "coco_instances_results.json"
    preds.parent.mkdir(parents=True, exist_ok=True)
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 0, "bbox": [0, 0, 4, 4], "score": 0.9}]))
    evidence = keep_evidence(
        {"trial0/coco_instances_results.json": KeptFile(preds, {"trial": 0})}, work_dir / "record.json"
    )
    return {"evaluator": "detection", "metrics": {"AP": 1.5}, "seed": job.seed, "evidence": evidence}


def test_records_keep_and_publish_their_evidence(tmp_path, fake_env):
    from benchmarks.runner.cli import leaderboard_main

    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent(SUITE))
    plan = make_plan(load_suite(path), fakes.FAKE_RESOLVERS)
    store = Store(tmp_path / "res")
    fns = StageFns(artifact=fakes.FAKE_FNS.artifact, eval=eval_with_predictions)
    run_plan(plan, store, LocalExecutor(), fns, log=lambda s: None)
    (job,) = [j for j in plan.jobs if j.kind == "eval"]
    rec_path = store.record_path(job.id)
    rec = read_json(rec_path)
    assert rec["evidence"]["trial0/coco_instances_results.json"]["file"] == (
        f"{job.id}.evidence/trial0/coco_instances_results.json"
    )
    assert check_evidence(rec, rec_path.parent) == []
    pub = tmp_path / "published"
    assert leaderboard_main([str(store.root), "--publish", str(pub), "--no-plots"]) == 0
    assert check_evidence(read_json(pub / "records" / f"{job.id}.json"), pub / "records") == []
