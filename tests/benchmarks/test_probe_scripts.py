"""The lightly cross-check script runs and starts from the same point as our trainer's health signal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("lightly")  # the perf extra; CI installs it


@pytest.mark.slow
def test_lightly_cross_check_runs_one_epoch_from_our_initial_knn() -> None:
    script = REPO / "benchmarks" / "probes" / "lightly_byol_knn.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--epochs", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["epoch"] for r in records] == [0, 1]
    assert -1.0 <= records[1]["loss"] <= 1.0  # lightly's loss is the negative cosine similarity

    from pretrain.config import load_pretrain_config
    from pretrain.knn import knn_accuracy
    from pretrain.train import _load_data
    from zoo.backbones import build_backbone

    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "byol-digits-m.yaml", [])  # the probe's digits-m
    data, val = _load_data(cfg)
    torch.manual_seed(0)
    ours = knn_accuracy(build_backbone("resnet18"), data.normalized(), data.labels, val.normalized(), val.labels, 10)
    assert records[0]["knn_val_top1"] == pytest.approx(ours, abs=1e-9)  # same init, same data, same signal
    assert records[1]["knn_val_top1"] != records[0]["knn_val_top1"]  # it trained
