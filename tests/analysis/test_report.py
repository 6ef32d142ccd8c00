"""The report page: tables from the records' metrics, the suite's leaderboard embedded, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from downstream.analysis.report import AnalysisResult, fixed_indices, render_report


def test_fixed_indices_cycle_through_classes() -> None:
    labels = np.array([2, 0, 0, 1, 2, 1, 0])
    assert fixed_indices(labels, 5).tolist() == [1, 3, 0, 2, 5]  # first 0, 1, 2, then second 0, 1
    assert len(fixed_indices(labels, 100)) == 7


def test_render_report_tables_leaderboard_and_links(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "lb" / "plots").mkdir(parents=True)
    fig = tmp_path / "figures" / "tsne.png"
    plot = tmp_path / "lb" / "plots" / "bar_knn_top1.png"
    fig.write_bytes(b"png")
    plot.write_bytes(b"png")
    result = AnalysisResult(
        dataset="digits-m",
        metrics={
            "byol": {
                "geometry": {
                    "effective_rank": 12.345,
                    "std_normalized_sqrt_d": 0.5,
                    "dim": 512.0,
                    "effective_rank_projector": 3.0,
                    "dim_projector": 256.0,
                },
                "layerwise": {"knn_top1_layer1": 0.25, "knn_top1_projector": 0.75, "linear_top1_layer1": 0.5},
                "invariance": {"cos_crop": 0.9, "cos_other": 0.4, "cos_crop_projector": 0.99},
            },
            "collapsed": {"geometry": {"effective_rank": 0.0, "dim": 512.0}},
        },
        figures={"tsne": fig},
    )
    md = render_report(
        "suite-x", result, tmp_path, leaderboard_md="# suite-x\n\n| v | m |\n|---|---|\n| a | 1 |", plots=[plot]
    )
    assert md.startswith("# suite-x: representation report")
    assert "### suite-x" in md and "| a | 1 |" in md  # embedded leaderboard, its heading demoted
    assert "| byol | pool (512-d) | 12.345 | 0.500 |" in md
    assert "| byol | projector (256-d) | 3.000 |" in md
    assert "| collapsed | pool (512-d) | 0.000 |" in md
    assert "| byol | 0.250 | 0.750 |" in md  # kNN per layer, layer1 then projector
    assert "| byol | 0.900 | 0.400 |" in md  # invariance: crop, other (head columns left out)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["lb/plots/bar_knn_top1.png", "figures/tsne.png"]  # relative to the page
    for link in links:
        assert (tmp_path / link).resolve().is_file()
