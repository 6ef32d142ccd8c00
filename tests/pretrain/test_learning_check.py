"""CI's learning check: a short BYOL run on ``shapes`` must beat its own random initialisation on kNN, and a
sabotaged one must not (issue 12: the test suite has to tell a working BYOL from a broken one).

Both runs use the shipped default config (``pretrain/configs/byol.yaml``) changed only by ``SHORT``; the
random-init reference is the in-run kNN at step 0, i.e. the same network before any update, measured with
the same bank and queries. The sabotage is ``byol.predictor=false``: without the predictor BYOL collapses
(paper Table 5b) and its kNN falls toward chance. The two runs go side by side, one torch thread each, as
two ``byol-bench pretrain`` processes (a 2-core CI machine runs them in the time of one).

The margin was measured (README, *Pretraining / Measured on shapes*): the default run ends well above its
initialisation, the sabotaged one below it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "pretrain" / "configs" / "byol.yaml"
SHORT = ["run.knn_every=100", "run.progress=false", "run.checkpoint_every=100000", "run.threads=1"]
MARGIN = 0.04  # kNN top-1 points over the initialisation that a working BYOL must clear


def _knn_curve(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["knn_val_top1"] for r in rows if r.get("kind") == "epoch" and "knn_val_top1" in r]


def _run_pair(tmp_path: Path, extra: list[str]) -> dict[str, list[float]]:
    """The default and the no-predictor run, side by side; their val kNN at step 0 and at the end."""
    runs = {"byol": [], "no-predictor": ["byol.predictor=false"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for name, sabotage in runs.items():
        cmd = [sys.executable, "-m", "benchmarks.cli", "pretrain", str(CONFIG), *SHORT, *extra, *sabotage]
        cmd += ["--out", str(tmp_path / name)]
        procs[name] = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=3600)
        assert proc.returncode == 0, f"{name} pretraining failed:\n{err[-3000:]}"
    curves = {name: _knn_curve(tmp_path / name) for name in runs}
    assert all(len(c) == 2 for c in curves.values()), curves  # step 0 (random init) and the end
    assert curves["byol"][0] == pytest.approx(curves["no-predictor"][0])  # the same seed: the same network
    return curves


def test_the_check_runs_both_arms_from_one_initialisation(tmp_path: Path) -> None:
    """The plumbing on a few steps (128 images, 16 px): both runs finish and report kNN at init and end."""
    curves = _run_pair(tmp_path, ["data.limit=128", "data.knn_limit=64", "data.image_size=16", "run.epochs=1"])
    cfg_byol = (tmp_path / "byol" / "config.yaml").read_text()
    cfg_np = (tmp_path / "no-predictor" / "config.yaml").read_text()
    assert "predictor: true" in cfg_byol and "predictor: false" in cfg_np
    assert all(0.0 <= v <= 1.0 for c in curves.values() for v in c)


def test_byol_learns_and_byol_without_predictor_does_not(tmp_path: Path) -> None:
    curves = _run_pair(tmp_path, [])
    (init, end), (_, end_np) = curves["byol"], curves["no-predictor"]
    assert end > init + MARGIN, f"BYOL did not learn: kNN {init:.3f} at init, {end:.3f} after training"
    assert end_np < init, f"BYOL without a predictor should not learn: kNN {init:.3f} → {end_np:.3f}"
    assert end > end_np + 2 * MARGIN
