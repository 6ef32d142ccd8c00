"""The README's main job end to end on CPU (real pretraining, export, kNN, linear, detectron2), at a smaller scale.

Checks the pipeline, not the paper: the suite's expected results are replaced by ones that hold at two
epochs and catch a broken pipeline (chance is 0.1 on the 10 shapes; a collapsed or NaN backbone or a
mislabelled record fails them). Whether BYOL learns is CI's learning check (tests/pretrain/
test_learning_check.py). Then a second run must do no work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pretrain.train")
pytest.importorskip("downstream.api")

from benchmarks.runner.cli import leaderboard_main, run_main  # noqa: E402
from benchmarks.runner.store import Store  # noqa: E402
from zoo.io import read_json  # noqa: E402

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "suites" / "quickstart.yaml"
SMALL = [
    "variants.byol.overrides=[run.epochs=2, data.limit=512, run.knn_every=0]",
    "evaluations.1.overrides=[l2_steps=7]",
    "evaluations.2.overrides=[max_iter=2, trials=1]",
    "expected=[[random-init, knn.top1_k20, '>', 0.15], [byol, knn.top1_k20, '>', 0.12],"
    " [byol, linear.top1, '>', 0.12], [random-init, linear.top1, '>', 0.13], [raw-pixels, knn.top1_k20, '>', 0.15],"
    " [byol, det-smoke.AP, '>=', 0.0]]",
]


@pytest.mark.slow
@pytest.mark.detectron2
def test_quickstart_twice(tmp_path, capsys):
    args = [str(SUITE), "--results-dir", str(tmp_path / "qs"), "--no-plots"]
    for s in SMALL:
        args += ["--set", s]
    assert run_main(args) == 0
    out = capsys.readouterr().out
    assert "summary: 9 done, 0 cached, 0 failed" in out and "expected results:" in out and "MISS" not in out
    store = Store(tmp_path / "qs")
    md = (store.root / "leaderboard" / "leaderboard.md").read_text()
    assert "| byol" in md and "| random-init (baseline)" in md and "| raw-pixels" in md
    assert "knn: top1_k20" in md and "det-smoke: AP" in md
    states = {p.name: read_json(p) for p in (store.root / "jobs").glob("*.json")}
    assert len(states) == 9 and all(s["status"] == "done" and s["attempts"] == 1 for s in states.values())
    # an artifact job's record points at its upstream artifact, whose hash the record carries
    rec = read_json(next((store.root / "records").glob("*.json")))
    assert rec["benchmark"]["upstream"] and rec["artifact"]["sha256"]

    assert run_main(args) == 0
    out = capsys.readouterr().out
    assert "all 9 jobs are done (cached): nothing to run" in out
    again = {p.name: read_json(p) for p in (store.root / "jobs").glob("*.json")}
    assert {k: v["attempts"] for k, v in again.items()} == {k: v["attempts"] for k, v in states.items()}

    # a failing expectation makes the run exit non-zero (still without running anything)
    assert run_main([*args, "--set", "expected=[[byol, knn.top1_k20, '>', random-init, 0.9]]"]) == 1
    assert "MISS" in capsys.readouterr().out
    # the leaderboard can be rebuilt from the results directory alone
    assert leaderboard_main([str(store.root), "--no-plots", "--no-check"]) == 0
