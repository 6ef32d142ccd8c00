"""One unit in every leaderboard rendering (issue 13, point 4): kNN/linear fractions and COCO AP points
both show in percent, with the unit named in headers, the CSV and plots; expectations keep record units."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from benchmarks.runner.expect import check_expectations
from benchmarks.runner.leaderboard import aggregate, records_frame, render_csv, render_latex, render_markdown
from benchmarks.runner.plots import bar_data
from benchmarks.runner.suite import parse_expectation
from zoo.io import atomic_write_json

PROV = {"suite": "s", "code_version": ["x"], "rendered_with": "x", "date": "d", "machine": ["m"], "command": []}


def _board(tmp_path):
    entries = []
    for variant, knn, ap in (("byol", 0.5812, 1.66), ("random-init", 0.4104, 0.39)):
        for group, evaluator, metrics, units in (
            # an old kNN record without metric_units: the unit comes from the evaluator's registration
            ("knn", "knn", {"top1_k20": knn, "k_selected": 20.0}, None),
            ("det", "detection", {"AP": ap, "AP_std": 0.1, "trials": 2.0}, {"AP": "AP points", "AP_std": "AP points"}),
        ):
            jid = f"{variant}-{group}"
            rec = {"evaluator": evaluator, "metrics": metrics}
            if units is not None:
                rec["metric_units"] = units
            atomic_write_json(tmp_path / "records" / f"{jid}.json", rec)
            entries.append({"id": jid, "kind": "eval", "variant": variant, "seed": 0, "group": group, "spec": {}})
    df = records_frame(entries, tmp_path / "records")
    return df, aggregate(df, ["byol", "random-init"], baseline="random-init")


def test_fractions_and_ap_points_both_show_in_percent(tmp_path):
    df, lb = _board(tmp_path)
    units = {(r.group, r.metric): r.unit for r in df.itertuples()}
    assert units[("knn", "top1_k20")] == "fraction" and units[("det", "AP")] == "AP points"
    assert pd.isna(units[("knn", "k_selected")]) and pd.isna(units[("det", "trials")])

    md = render_markdown(lb, PROV)
    assert "knn: top1_k20 (%)" in md and "det: AP (%)" in md and "det: AP_std (%)" in md
    assert "| knn: k_selected " in md and "k_selected (%)" not in md  # a count has no unit
    row = next(line for line in md.splitlines() if line.startswith("| byol"))
    assert "58.1 (#1)" in row and "1.7 (#1)" in row  # 0.5812 as a percentage; AP 1.66 points stays 1.66 %
    assert "+17.1" in md  # Δ in percentage points too

    csv = pd.read_csv(io.StringIO(render_csv(lb, PROV)), comment="#")
    knn = csv[(csv.variant == "byol") & (csv.metric == "top1_k20")].iloc[0]
    ap = csv[(csv.variant == "byol") & (csv.metric == "AP")].iloc[0]
    assert knn["unit"] == "%" and knn["mean"] == pytest.approx(58.12)
    assert ap["unit"] == "%" and ap["mean"] == pytest.approx(1.66)
    assert "top1\\_k20 (\\%)" in render_latex(lb, PROV) or "top1_k20 (%)" in render_latex(lb, PROV)

    assert bar_data(lb, "knn.top1_k20")[1] == pytest.approx([58.12, 41.04])
    assert lb.header(("det", "AP"), sep=".") == "det.AP (%)"  # the bar chart's y label


def test_expectations_stay_in_record_units(tmp_path):
    _, lb = _board(tmp_path)
    checks = check_expectations(
        lb,
        [
            parse_expectation(["byol", "knn.top1_k20", ">", 0.5]),  # a fraction, as the record stores it
            parse_expectation(["byol", "det.AP", ">", "random-init", 1.0]),  # COCO points
        ],
    )
    assert [c.ok for c in checks] == [True, True]


def test_records_name_their_units(tmp_path):
    from downstream.api import evaluate
    from zoo.datasets import DatasetOptions

    rec = evaluate("raw-pixels", "knn", "digits", dataset_options=DatasetOptions(image_size=8), overrides=["k=[5]"])
    assert rec["metric_units"]["top1_k5"] == "fraction" and rec["metric_units"]["map_at_r"] == "fraction"
    assert set(rec["metric_units"]) <= set(rec["metrics"])


def test_every_builtin_evaluator_declares_its_rates():
    from downstream.registry import get_evaluator

    assert get_evaluator("knn").unit("top1_k20") == "fraction" and get_evaluator("knn").unit("k_selected") is None
    assert get_evaluator("linear").unit("val_top1_mean") == "fraction" and get_evaluator("linear").unit("l2") is None
    assert get_evaluator("layerwise").unit("linear_top1_layer3") == "fraction"
    assert (
        get_evaluator("nuisance").unit("photo_top1") == "fraction" and get_evaluator("nuisance").unit("ink_r2") is None
    )
    pytest.importorskip("detectron2")
    det = get_evaluator("detection")
    assert det.unit("AP") == det.unit("AP-3_std") == det.unit("APs") == "AP points" and det.unit("trials") is None
