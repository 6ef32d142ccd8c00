"""benchmarks/recipe_curves.py gathers each run's val kNN curve and copies the run's config and log."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import recipe_curves


def _run(path, knn):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    lines = [
        {"kind": "epoch", "epoch": e, "step": 10 * e, "train_s": 5.0 * e, "knn_val_top1": k} for e, k in enumerate(knn)
    ]
    lines.insert(1, {"kind": "step", "step": 5, "loss": 1.0})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_curves_are_collected_copied_and_plotted(tmp_path, monkeypatch, capsys):
    _run(tmp_path / "a", [0.5, 0.6, 0.7])
    _run(tmp_path / "b", [0.5, 0.55])
    out = tmp_path / "out"
    argv = ["x", "--out", str(out), f"A={tmp_path / 'a'}", f"B={tmp_path / 'b'}", "--note", "B=stopped early"]
    monkeypatch.setattr(sys, "argv", argv)
    recipe_curves.main()
    curves = json.loads((out / "curves.json").read_text())
    assert [e["knn_val_top1"] for e in curves["A"]["epochs"]] == [0.5, 0.6, 0.7]
    assert [e["step"] for e in curves["B"]["epochs"]] == [0, 10] and curves["B"]["note"] == "stopped early"
    assert (out / "A" / "config.yaml").read_text() == "seed: 0\n"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "0.500 / 0.600 / 0.700" in capsys.readouterr().out


def test_a_run_without_knn_records_is_an_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text(json.dumps({"kind": "step", "step": 1}) + "\n")
    monkeypatch.setattr(sys, "argv", ["x", "--out", str(tmp_path / "o"), f"R={tmp_path / 'r'}"])
    with pytest.raises(SystemExit, match="no epoch record"):
        recipe_curves.main()


def test_a_clock_restarted_by_a_resume_goes_on_from_the_last_epoch(tmp_path):
    """Runs resumed before train_s was checkpointed logged it from 0 again; the curve must not fold back."""
    run = tmp_path / "r"
    run.mkdir()
    clock = [0.0, 150.0, 300.0, 90.0, 240.0]  # resumed during epoch 3
    lines = [
        {"kind": "epoch", "epoch": e, "step": 10 * e, "train_s": t, "knn_val_top1": 0.5} for e, t in enumerate(clock)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = recipe_curves.curve(run)
    assert [r["train_s"] for r in rows] == [0.0, 150.0, 300.0, 390.0, 540.0]
    assert [bool(r.get("clock_restarted")) for r in rows] == [False, False, False, True, False]


def test_published_runs_are_read_in_place_when_runs_are_added(tmp_path, monkeypatch):
    """Adding a run to a published recipes folder passes the published ones as OUT/NAME: no copy onto itself."""
    out = tmp_path / "recipes"
    _run(out / "A", [0.5, 0.6])
    _run(tmp_path / "new", [0.5, 0.7])
    monkeypatch.setattr(sys, "argv", ["x", "--out", str(out), f"A={out / 'A'}", f"N={tmp_path / 'new'}"])
    recipe_curves.main()
    curves = json.loads((out / "curves.json").read_text())
    assert [e["knn_val_top1"] for e in curves["A"]["epochs"]] == [0.5, 0.6]
    assert [e["knn_val_top1"] for e in curves["N"]["epochs"]] == [0.5, 0.7]
    assert (out / "A" / "metrics.jsonl").read_text().count("knn_val_top1") == 2
