"""End to end: ``byol-bench analyze`` on a healthy and a collapsed ResNet-18 artifact (with heads) writes
records, figures and a report whose numbers say which one collapsed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from downstream.analysis.cli import main
from zoo.artifact import ArtifactMeta, save_artifact
from zoo.backbones import build_backbone
from zoo.heads import MLPSpec, build_mlp


def _artifact(directory: Path, collapse: bool) -> Path:
    torch.manual_seed(0)
    model = build_backbone("resnet18")
    if collapse:
        # layer4's first block outputs relu(bn2(.) + downsample(.)); with both BN scales 0 it is the constant
        # relu(b2 + b_ds), so everything after it (hence the pooled feature) is the same for every image
        block = model.layer4[0]
        with torch.no_grad():
            for bn in (block.bn2, block.downsample[1]):
                bn.weight.zero_()
                bn.bias.fill_(0.5)
    heads = {
        "projector": (MLPSpec(512, 64, 32), build_mlp(MLPSpec(512, 64, 32)).eval()),
        "predictor": (MLPSpec(32, 64, 32), build_mlp(MLPSpec(32, 64, 32)).eval()),
    }
    meta = ArtifactMeta(architecture="resnet18", feature_dim=512, input_size=32, method="test")
    return save_artifact(directory, model, meta, heads=heads)


@pytest.mark.slow
def test_analyze_cli_healthy_vs_collapsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    healthy = _artifact(tmp_path / "healthy", collapse=False)
    collapsed = _artifact(tmp_path / "collapsed", collapse=True)
    out = tmp_path / "report"
    rc = main(
        [
            f"--artifact=healthy={healthy}",
            f"--artifact=collapsed={collapsed}",
            "--dataset=digits",
            f"--out={out}",
            "--set=layerwise.linear=false",
            "--set=geometry.max_images=128",
            "--set=invariance.max_images=64",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    rec = {
        (v, ev): json.loads((out / "records" / f"{v}.{ev}.json").read_text())
        for v in ("healthy", "collapsed")
        for ev in ("geometry", "layerwise", "invariance")
    }
    g_ok, g_bad = rec[("healthy", "geometry")]["metrics"], rec[("collapsed", "geometry")]["metrics"]
    assert g_bad["effective_rank"] < 1e-3 and g_bad["std_normalized"] < 1e-6
    assert g_ok["effective_rank"] > 10 and g_ok["std_normalized_sqrt_d"] > 0.05
    assert "effective_rank_projector" in g_ok and "effective_rank_predictor" in g_ok
    lw = rec[("healthy", "layerwise")]["metrics"]
    assert {f"knn_top1_{x}" for x in ("layer1", "layer2", "layer3", "layer4", "projector", "predictor")} <= set(lw)
    assert rec[("collapsed", "invariance")]["metrics"]["cos_other"] == pytest.approx(1.0, abs=1e-5)

    report = (out / "report.md").read_text()
    for fig in ("tsne", "occlusion", "retrieval"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000
        assert f"](figures/{fig}.png)" in report
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link
    assert "| collapsed | pool (512-d) | 0.000 |" in report
    assert "report written to" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    assert main(["--artifact", "no-equals-sign", "--out", str(tmp_path)]) == 2
    assert main(["--artifact", "a=raw-pixels", "--set", "geometry", "--out", str(tmp_path)]) == 2
