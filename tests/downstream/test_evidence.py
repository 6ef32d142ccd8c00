"""Files an evaluator keeps (``ctx.keep``) outlive its temporary work folder and travel with the record."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from downstream.api import evaluate
from downstream.evidence import check_evidence, evidence_path, relocate_evidence
from downstream.registry import EVALUATORS, register_evaluator
from zoo.datasets import DatasetOptions
from zoo.io import sha256_file


@pytest.fixture
def keeping_evaluator():
    """An evaluator that writes predictions into its work folder and keeps them; it notes that folder."""
    seen = {}

    @dataclass(frozen=True)
    class Cfg:
        pass

    def fn(ctx, cfg):
        seen["work_dir"] = ctx.work_dir
        path = ctx.work_dir / "inference" / "preds.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps([{"image_id": 1, "score": 0.5}]))
        ctx.keep("trial0/preds.json", path, trial=0, written_by="test")
        return {"score": 0.5}

    register_evaluator("keeps-files", config=Cfg, task="classification", frozen=False, selection_rule="none")(fn)
    yield seen
    EVALUATORS.pop("keeps-files", None)


def test_kept_files_survive_the_temporary_work_folder(tmp_path, keeping_evaluator):
    out = tmp_path / "results" / "rec.json"
    rec = evaluate("raw-pixels", "keeps-files", "digits", dataset_options=DatasetOptions(image_size=8), out=out)
    assert not keeping_evaluator["work_dir"].exists()  # the temporary work folder is gone ...
    entry = rec["evidence"]["trial0/preds.json"]
    kept = out.parent / entry["file"]
    assert kept == tmp_path / "results" / "rec.evidence" / "trial0" / "preds.json"
    assert json.loads(kept.read_text()) == [{"image_id": 1, "score": 0.5}]  # ... the predictions are not
    assert entry["sha256"] == sha256_file(kept) and entry["bytes"] == kept.stat().st_size
    assert entry["origin"]["trial"] == 0 and entry["origin"]["written_by"] == "test"
    on_disk = json.loads(out.read_text())
    assert on_disk["evidence"] == rec["evidence"]
    assert check_evidence(on_disk, out.parent) == []
    # an altered or missing file is reported
    kept.write_text("[]")
    assert "does not match the recorded sha256" in check_evidence(on_disk, out.parent)[0]
    kept.unlink()
    assert "is missing" in check_evidence(on_disk, out.parent)[0]


def test_without_out_only_the_hash_is_recorded(keeping_evaluator):
    rec = evaluate("raw-pixels", "keeps-files", "digits", dataset_options=DatasetOptions(image_size=8))
    entry = rec["evidence"]["trial0/preds.json"]
    assert entry["file"] is None and len(entry["sha256"]) == 64
    assert check_evidence(rec, ".") == ["trial0/preds.json: not kept beside the record"]
    with pytest.raises(FileNotFoundError, match="was not kept"):
        evidence_path(rec, ".", "trial0/preds.json")


def test_relocate_copies_evidence_beside_the_new_record(tmp_path, keeping_evaluator):
    out = tmp_path / "runs" / "job" / "record.json"
    rec = evaluate("raw-pixels", "keeps-files", "digits", dataset_options=DatasetOptions(image_size=8), out=out)
    dst = tmp_path / "records" / "job.json"
    moved = relocate_evidence(rec, out.parent, dst)
    assert moved["evidence"]["trial0/preds.json"]["file"] == "job.evidence/trial0/preds.json"
    assert check_evidence(moved, dst.parent) == []
    assert rec["evidence"]["trial0/preds.json"]["file"] == "record.evidence/trial0/preds.json"  # not mutated
