"""End-to-end ``byol-bench eval`` runs (slow): knn and linear on digits with a real artifact and raw pixels."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("evaluator", ["knn", "linear"])
def test_eval_cli_end_to_end(evaluator, tiny_artifact, tmp_path, capsys):
    for art in (str(tiny_artifact), "raw-pixels"):
        out = tmp_path / f"{evaluator}-{art.replace('/', '_')}.json"
        extra = ["l2_steps=6"] if evaluator == "linear" else []
        rc = main(
            ["eval", "--artifact", art, "--evaluator", evaluator, "--dataset", "digits", "--out", str(out),
             "--cache-dir", str(tmp_path / "cache"), "--seed", "1", *extra]
        )  # fmt: skip
        assert rc == 0
        rec = json.loads(out.read_text())
        printed = capsys.readouterr().out
        key = "top1_k20" if evaluator == "knn" else "top1"
        assert key in printed and rec["metrics"][key] > 0.3
        assert rec["seed"] == 1 and rec["evaluator"] == evaluator


def test_eval_cli_errors(capsys):
    assert main(["eval", "--artifact", "raw-pixels", "--evaluator", "nope", "--dataset", "digits"]) == 2
    assert "unknown evaluator 'nope'" in capsys.readouterr().err
    assert main(["eval", "--list"]) == 0
    out = capsys.readouterr().out
    assert "knn" in out and "linear" in out


def test_eval_cli_dataset_options_reach_the_dataset(tmp_path, capsys):
    """--dataset-option sets DatasetOptions fields, typed; the record's dataset options carry them, and a bad key
    or value is an error naming it."""
    out = tmp_path / "rec.json"
    argv = ["eval", "--artifact", "raw-pixels", "--evaluator", "knn", "--dataset", "shapes", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--dataset-option", "num_train=300",
            "--dataset-option", "num_test=200", "--dataset-option", f"cache_dir={tmp_path / 'data'}"]  # fmt: skip
    assert main(argv) == 0
    rec = json.loads(out.read_text())
    assert rec["dataset"]["options"]["num_train"] == 300 and rec["dataset"]["splits"]["test"] == 200
    for bad, message in (("det_tset_images=5", "unknown"), ("num_train=many", "expected an integer"),
                         ("root=/x", "use --root"), ("num_train", "KEY=VALUE")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["eval", "--artifact", "raw-pixels", "--evaluator", "knn", "--dataset", "shapes",
                  "--dataset-option", bad])  # fmt: skip
        assert message in capsys.readouterr().err
