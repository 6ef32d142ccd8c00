"""Files an evaluator keeps (``ctx.keep``) outlive its temporary work folder and travel with the record."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from downstream.api import evaluate
from downstream.evidence import (
    check_evidence,
    evidence_path,
    keep_predictions,
    relocate_evidence,
    rescore_predictions,
)
from downstream.knn import topk_accuracy
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


@pytest.mark.parametrize(
    ("evaluator", "options", "name", "keys"),
    [
        ("knn", ["k=[5]"], "predictions_test_k5.json", ("top1_k5", "top5_k5")),
        ("linear", ["l2_steps=3"], "predictions_test.json", ("top1", "top5")),
    ],
)
def test_classification_records_keep_test_predictions_that_rescore_to_their_metrics(
    tmp_path, evaluator, options, name, keys
):
    out = tmp_path / "rec.json"
    rec = evaluate(
        "raw-pixels", evaluator, "digits", dataset_options=DatasetOptions(image_size=8), out=out, overrides=options
    )
    path = evidence_path(rec, out.parent, name)
    doc = json.loads(path.read_text())
    assert doc["split"] == "test" and len(doc["labels"]) == len(doc["top5"]) > 100
    assert all(len(row) == 5 and len(set(row)) == 5 for row in doc["top5"])
    again = rescore_predictions(path)
    assert (again["top1"], again["top5"]) == (rec["metrics"][keys[0]], rec["metrics"][keys[1]])
    assert check_evidence(json.loads(out.read_text()), out.parent) == []


def test_rescored_predictions_follow_the_file_not_the_record(tmp_path):
    class Ctx:
        work_dir = tmp_path
        kept: dict = {}

        def keep(self, name, path, **origin):
            self.kept[name] = (path, origin)

    ctx = Ctx()
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.5, 0.0], [0.0, 0.2, 0.8], [0.7, 0.2, 0.1]])
    labels = torch.tensor([1, 1, 0, 0])
    path = keep_predictions(ctx, "p.json", scores, labels, split="test", written_by="t")
    # row 1 is a tie between classes 0 and 1: the lower index wins, as topk_accuracy counts it
    assert json.loads(path.read_text())["top5"] == [[1, 0, 2], [0, 1, 2], [2, 1, 0], [0, 1, 2]]
    assert rescore_predictions(path) == {"top1": 0.5, "top5": 1.0}
    assert rescore_predictions(path)["top1"] == topk_accuracy(scores, labels, (1,))[1]
    assert ctx.kept["p.json"][1] == {"written_by": "t", "split": "test"}
    with pytest.raises(ValueError, match="do not match"):
        keep_predictions(ctx, "q.json", scores, labels[:3], split="test")
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a"):
        rescore_predictions(path)


def test_rescore_cli_checks_a_linear_record_and_catches_a_changed_metric(tmp_path, capsys):
    from downstream.detection.rescore import main

    out = tmp_path / "rec.json"
    evaluate("raw-pixels", "linear", "digits", dataset_options=DatasetOptions(image_size=8), out=out,
             overrides=["l2_steps=3"])  # fmt: skip
    assert main([str(out)]) == 0
    assert "matches" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    rec["metrics"]["top1"] += 0.01  # a record whose number no longer follows from its predictions
    out.write_text(json.dumps(rec))
    assert main([str(out)]) == 1
    printed = capsys.readouterr().out
    assert "DIFFERS" in printed and "top1: recorded" in printed


def test_rescore_cli_takes_a_results_folder_and_skips_records_without_predictions(tmp_path, capsys):
    from downstream.detection.rescore import main

    records = tmp_path / "suite" / "records"
    records.mkdir(parents=True)
    for name in ("a", "b"):
        evaluate("raw-pixels", "linear", "digits", dataset_options=DatasetOptions(image_size=8),
                 out=records / f"{name}.json", overrides=["l2_steps=3"])  # fmt: skip
    (records / "g.json").write_text(json.dumps({"evaluator": "geometry", "metrics": {"rank": 3.0}}))
    assert main([str(tmp_path / "suite")]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 records match" in printed and "1 skipped (no kept predictions: geometry)" in printed
    rec = json.loads((records / "b.json").read_text())
    rec["metrics"]["top1"] += 0.01
    (records / "b.json").write_text(json.dumps(rec))
    assert main([str(records)]) == 1  # the records folder itself works too
    assert "1 of 2 records match" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    assert "missing: no such record file or folder" in capsys.readouterr().err


def test_rescore_reports_bad_records_by_path_and_checks_the_others(tmp_path, capsys):
    """Issue 24.4: a changed digit fails the record's checksum; broken JSON does not stop the other records."""
    from downstream.detection.rescore import main
    from zoo.records import read_record

    records = tmp_path / "suite" / "records"
    records.mkdir(parents=True)
    for name in ("a", "b", "c"):
        evaluate("raw-pixels", "linear", "digits", dataset_options=DatasetOptions(image_size=8),
                 out=records / f"{name}.json", overrides=["l2_steps=3"])  # fmt: skip
    assert read_record(records / "a.json").sealed  # evaluate() seals what it writes
    (records / "a.json").write_text((records / "a.json").read_text()[:100])  # torn: not JSON
    text = (records / "b.json").read_text()
    (records / "b.json").write_text(text.replace('"seed": 0', '"seed": 1', 1))  # a field rescore cannot see
    assert main([str(records)]) == 1
    captured = capsys.readouterr()
    assert f"BAD RECORD {records / 'a.json'}: not valid JSON" in captured.err
    assert f"BAD RECORD {records / 'b.json'}: does not match its record_sha256" in captured.err
    line_c = next(line for line in captured.out.splitlines() if line.startswith(f"{records / 'c.json'}: "))
    assert line_c.endswith("matches")  # still checked, after the two bad ones
    assert "1 of 3 records match" in captured.out and "2 BAD" in captured.out
