"""Aggregation maths on hand-made records, the three renderings, plots and expected-result checks."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from benchmarks.runner.expect import check_expectations
from benchmarks.runner.leaderboard import (
    aggregate,
    format_cell,
    provenance,
    records_frame,
    render_csv,
    render_latex,
    render_markdown,
)
from benchmarks.runner.plots import bar_charts, bar_data, curve_plot, loss_curves
from benchmarks.runner.suite import parse_expectation
from zoo.io import atomic_write_json

# variant -> seed -> (knn.top1, knn.loss, linear.top1)
VALUES = {
    "byol": {0: (0.80, 1.0, 0.70), 1: (0.84, 0.8, 0.74), 2: (0.82, 0.9, 0.72)},
    "tau-1": {0: (0.10, 2.0, 0.20), 1: (0.14, 2.2, 0.22)},
    "random-init": {0: (0.50, 3.0, 0.40), 1: (0.50, 3.0, 0.44), 2: (0.56, 3.0, 0.42)},
}


def frame() -> pd.DataFrame:
    rows = []
    for v, seeds in VALUES.items():
        for s, (knn, loss, lin) in seeds.items():
            rows += [
                {"variant": v, "seed": s, "group": "knn", "metric": "top1", "value": knn, "job_id": f"{v}{s}k"},
                {"variant": v, "seed": s, "group": "knn", "metric": "loss", "value": loss, "job_id": f"{v}{s}k"},
                {"variant": v, "seed": s, "group": "linear", "metric": "top1", "value": lin, "job_id": f"{v}{s}l"},
            ]
    return pd.DataFrame(rows)


def board(**kw):
    kw.setdefault("baseline", "random-init")
    kw.setdefault("lower_is_better", ["knn.loss"])
    return aggregate(frame(), ["byol", "tau-1", "random-init"], **kw)


def test_mean_std_n_by_hand():
    lb = board()
    assert list(lb.mean.index) == ["byol", "tau-1", "random-init"]
    assert lb.mean.loc["byol", ("knn", "top1")] == pytest.approx(0.82)
    # sample std (ddof=1) of 0.80, 0.84, 0.82 = 0.02; of 0.10, 0.14 = 0.02828...
    assert lb.std.loc["byol", ("knn", "top1")] == pytest.approx(0.02)
    assert lb.std.loc["tau-1", ("knn", "top1")] == pytest.approx(math.sqrt(0.0008))
    assert lb.std.loc["random-init", ("linear", "top1")] == pytest.approx(0.02)
    assert lb.n.loc["tau-1", ("linear", "top1")] == 2 and lb.n.loc["byol", ("knn", "top1")] == 3
    # columns grouped by evaluation, in the order the groups appear
    assert [c[0] for c in lb.columns] == ["knn", "knn", "linear"]


def test_ranks_and_lower_is_better():
    lb = board()
    assert list(lb.rank[("knn", "top1")]) == [1, 3, 2]
    assert list(lb.rank[("knn", "loss")]) == [1, 2, 3]  # ascending: 0.9 < 2.1 < 3.0
    lb2 = board(lower_is_better=[])
    assert list(lb2.rank[("knn", "loss")]) == [3, 2, 1]
    # ties share the best rank
    df = pd.DataFrame(
        [
            {"variant": v, "seed": 0, "group": "g", "metric": "m", "value": x, "job_id": v}
            for v, x in (("a", 1.0), ("b", 1.0), ("c", 0.5))
        ]
    )
    assert list(aggregate(df, ["a", "b", "c"]).rank[("g", "m")]) == [1, 1, 3]


def test_delta_against_baseline():
    lb = board()
    assert lb.delta.loc["byol", ("knn", "top1")] == pytest.approx(0.82 - 0.52)
    assert lb.delta.loc["tau-1", ("linear", "top1")] == pytest.approx(0.21 - 0.42)
    assert lb.delta.loc["random-init"].abs().max() == 0
    other = board(baseline="byol")
    assert other.delta.loc["random-init", ("linear", "top1")] == pytest.approx(0.42 - 0.72)
    assert board(baseline=None).delta is None


def test_metric_selection_and_missing_cells():
    lb = board(metrics=["linear.top1", "knn.top1", "knn.nonexistent"])
    assert lb.columns == [("linear", "top1"), ("knn", "top1"), ("knn", "nonexistent")]
    assert math.isnan(lb.value("byol", "knn.nonexistent"))
    assert format_cell(float("nan"), float("nan"), 0, 3, 3) == "—"
    assert format_cell(0.8123, float("nan"), 1, 3, 1) == "0.812"
    assert format_cell(0.8123, 0.0049, 2, 3, 3, 1.0) == "0.812 ± 0.005 [n=2] (#1)"


PROV = {
    "suite": "toy",
    "description": "hand-made",
    "scale": "none",
    "code_version": ["abc+dirty"],
    "rendered_with": "abc",
    "date": "2026-11-27T00:00:00+00:00",
    "machine": ["fake cpu"],
    "command": ["byol-bench run toy.yaml"],
}


def test_markdown_rendering():
    md = render_markdown(board(), PROV)
    for text in (
        "suite: toy",
        "code version (records): abc+dirty",
        "machine: fake cpu",
        "reproduce: byol-bench run",
        "scale: none",
        "2026-11-27",
    ):
        assert text in md
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    assert "knn: top1" in header and "linear: top1" in header and "knn: loss ↓" in header
    byol = next(line for line in lines if line.startswith("| byol"))
    assert "0.820 ± 0.020 (#1)" in byol and "0.720 ± 0.020 (#1)" in byol
    tau = next(line for line in lines if line.startswith("| tau-1") and "±" in line)
    assert "0.120 ± 0.028 (#3)" in tau
    assert "## Δ against `random-init`" in md
    delta_byol = [line for line in lines if line.startswith("| byol")][1]
    assert "+0.300" in delta_byol and "+0.300" in delta_byol


def test_csv_rendering_round_trips():
    text = render_csv(board(), PROV)
    assert text.startswith("# suite: toy\n")
    df = pd.read_csv(io.StringIO(text), comment="#")
    row = df[(df.variant == "byol") & (df.group == "knn") & (df.metric == "top1")].iloc[0]
    assert row["mean"] == pytest.approx(0.82) and row["std"] == pytest.approx(0.02)
    assert row["n"] == 3 and row["rank"] == 1 and row["delta"] == pytest.approx(0.30)
    assert len(df) == 9


def test_latex_rendering():
    tex = render_latex(board(), PROV)
    assert "% suite: toy" in tex
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\multicolumn{2}{c}{knn} & \\multicolumn{1}{c}{linear}" in tex
    assert "\\cmidrule(lr){3-4} \\cmidrule(lr){5-5}" in tex
    assert "0.820 ± 0.020" in tex and "random-init (baseline)" in tex
    lines = tex.splitlines()
    assert lines.index("\\toprule") < next(i for i, x in enumerate(lines) if "multicolumn" in x)


def test_expectations():
    lb = board()
    exps = [
        parse_expectation(["byol", "knn.top1", ">", "random-init"]),
        parse_expectation(["byol", "knn.top1", ">", "random-init", 0.35]),  # 0.82 > 0.52 + 0.35 is false
        parse_expectation(["byol", "linear.top1", 0.70, 0.03]),
        parse_expectation(["byol", "linear.top1", 0.60, 0.03]),
        parse_expectation(["tau-1", "knn.loss", "<", 2.0]),  # 2.1 < 2.0 is false
        parse_expectation(["tau-1", "knn.loss", "<=", 2.5]),
        parse_expectation(["byol", "knn.missing", ">", 0.0]),
    ]
    assert [r.ok for r in check_expectations(lb, exps)] == [True, False, True, False, False, True, False]
    msgs = [r.message for r in check_expectations(lb, exps)]
    assert "got 0.8200 vs random-init = 0.5200" in msgs[0]
    assert "no value" in msgs[-1]


def test_records_frame_and_provenance(tmp_path):
    entries = []
    for i, (v, s, metrics) in enumerate(
        (("a", 0, {"top1": 0.5, "knn.top5": 0.9, "note": "x"}), ("b", 0, {"top1": 0.2}))
    ):
        jid = f"job{i}"
        entries.append(
            {"id": jid, "kind": "eval", "variant": v, "seed": s, "group": "knn", "spec": {"evaluator": "knn"}}
        )
        atomic_write_json(
            tmp_path / "records" / f"{jid}.json",
            {
                "evaluator": "knn",
                "metrics": metrics,
                "code_version": {"git_sha": "deadbeefcafe0000", "git_dirty": True},
                "machine": {"cpu": "Xeon", "cpu_count": 2, "gpu": "H100" if i else None},
            },
        )
    entries.append({"id": "missing", "kind": "eval", "variant": "c", "seed": 0, "group": "knn", "spec": {}})
    df = records_frame(entries, tmp_path / "records")
    assert sorted(df.metric.unique()) == ["top1", "top5"]  # evaluator prefix stripped, non-numbers skipped
    assert set(df.variant) == {"a", "b"}
    prov = provenance(
        "s",
        records=[
            {
                "code_version": {"git_sha": "deadbeefcafe0000", "git_dirty": True},
                "machine": {"cpu": "Xeon", "cpu_count": 2, "gpu": "H100"},
            }
        ],
    )
    assert prov["code_version"] == ["deadbeefcafe+dirty"] and "GPU H100" in prov["machine"][0]


def test_plots(tmp_path):
    lb = board()
    paths = bar_charts(lb, ["knn.top1", "linear.top1"], tmp_path)
    assert [p.name for p in paths] == ["bar_knn_top1.png", "bar_linear_top1.png"]
    curve = curve_plot(lb, {"byol": 0.99, "tau-1": 1.0}, ["knn.top1"], "τ", tmp_path / "curve.png")
    assert curve is not None and curve.stat().st_size > 1000
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5, "epoch": 1, "knn_val_top1": 0.3}\n{"step":')
    out = loss_curves({"byol": [log]}, tmp_path)
    assert [p.name for p in out] == ["pretrain_loss.png", "pretrain_knn.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths + out)


def test_bar_data_leaves_out_variants_without_the_metric(tmp_path):
    df = frame()
    extra = [
        {"variant": "byol", "seed": s, "group": "geometry", "metric": "rank_projector", "value": r, "job_id": f"g{s}"}
        for s, r in ((0, 10.0), (1, 14.0))
    ]
    lb = aggregate(pd.concat([df, pd.DataFrame(extra)]), ["byol", "tau-1", "random-init"], baseline="random-init")
    variants, means, stds = bar_data(lb, "geometry.rank_projector")
    assert variants == ["byol"] and means == [12.0] and stds == pytest.approx([2.0**0.5 * 2.0])
    variants, means, _ = bar_data(lb, "knn.top1")
    assert variants == ["byol", "tau-1", "random-init"] and means[1] == pytest.approx(0.12)
    assert bar_data(lb, "knn.nothing") is None
    assert [p.name for p in bar_charts(lb, ["geometry.rank_projector", "knn.nothing"], tmp_path)] == [
        "bar_geometry_rank_projector.png"
    ]
