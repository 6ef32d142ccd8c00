"""Perf tooling: the records and the README table built from them, time-to-learn, the GPU check's CPU smoke run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.perf_record import (
    load_perf_records,
    perf_record,
    render_perf_table,
    replace_section,
    side,
    write_perf_record,
)

REPO = Path(__file__).resolve().parents[2]
PERF = REPO / "benchmarks" / "perf"


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"perf_{name}", PERF / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record(name, ours, ref, ratio, **kw):
    sides = {"ours": side("ours", ours)}
    if ref is not None:
        sides["lightly"] = side("lightly", ref)
    return perf_record(
        name, what="a thing", metric="images_per_s", unit="images/s", higher_is_better=True, sides=sides,
        ratio=ratio, ratio_definition="ours / lightly", threads=2, device="cpu", command=["bench.py", "--x", "1"], **kw,
    )  # fmt: skip


def test_side_median_and_record_provenance(tmp_path):
    s = side("ours", [3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["each"] == [3.0, 1.0, 2.0, 10.0]
    with pytest.raises(ValueError, match="no measurements"):
        side("ours", [])
    rec = _record("tp-2t", [120.0, 100.0, 130.0], [90.0, 95.0, 80.0], 1.3, load_before=[3.0, 2.0, 1.0])
    assert rec["sides"]["ours"]["median"] == 120.0 and rec["command"] == "python bench.py --x 1"
    assert {"git_sha", "git_dirty"} <= set(rec["code_version"]) and rec["machine"]["cpu_count"] >= 1
    assert rec["load_average"]["before"] == [3.0, 2.0, 1.0] and rec["threads"] == 2
    with pytest.raises(ValueError, match="name"):
        _record("bad name/..", [1.0], None, None)
    path = write_perf_record(rec, tmp_path)
    assert path == tmp_path / "tp-2t.json" and json.loads(path.read_text())["ratio"] == 1.3


def test_records_render_one_row_each_with_commands(tmp_path):
    write_perf_record(_record("b-speed", [2.0], None, None), tmp_path)
    write_perf_record(_record("a-throughput", [120.0, 124.0], [95.0, 97.0], 1.27), tmp_path)
    (tmp_path / "sub").mkdir()  # sub-folders (the GPU check's) are not part of the table
    write_perf_record(_record("gpu", [1.0], None, None), tmp_path / "sub")
    records = load_perf_records(tmp_path)
    assert [r["name"] for r in records] == ["a-throughput", "b-speed"]
    table = render_perf_table(records)
    lines = [ln for ln in table.splitlines() if ln.startswith("| `")]
    assert len(lines) == 2 and "**1.27×**" in lines[0] and "122 images/s" in lines[0] and "96 images/s" in lines[0]
    assert "| –" in lines[1]  # no reference side, no ratio
    assert "`python bench.py --x 1`" in table
    (tmp_path / "junk.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a perf record"):
        load_perf_records(tmp_path)


def test_replace_section_touches_only_the_block():
    text = "# T\nbefore\n<!-- section:perf-table -->\nold\nrows\n<!-- /section:perf-table -->\nafter\n"
    new = replace_section(text, "perf-table", "| new |")
    assert new == "# T\nbefore\n<!-- section:perf-table -->\n| new |\n<!-- /section:perf-table -->\nafter\n"
    assert replace_section(new, "perf-table", "| new |") == new  # idempotent
    with pytest.raises(ValueError, match="exactly one"):
        replace_section("no markers", "perf-table", "x")
    with pytest.raises(ValueError, match="exactly one"):
        replace_section(text + text, "perf-table", "x")


def test_report_script_rebuilds_and_checks_the_readme(tmp_path):
    results = tmp_path / "perf"
    write_perf_record(_record("a-throughput", [120.0], [95.0], 1.26), results)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- section:perf-table -->\nstale\n<!-- /section:perf-table -->\noutro\n")
    cmd = [sys.executable, str(PERF / "report.py"), "--results", str(results), "--readme", str(readme)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    check = subprocess.run([*cmd, "--check"], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "differs" in check.stderr
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- section:perf-table -->\n| benchmark") and text.endswith("outro\n")
    assert "stale" not in text and "**1.26×**" in text
    assert subprocess.run([*cmd, "--check"], capture_output=True, env=env).returncode == 0


def test_time_to_reach_is_the_first_evaluation_above_random_init_plus_margin():
    ttl = _load_script("time_to_learn")
    curve = [{"train_s": 0.0, "knn": 0.50}, {"train_s": 10.0, "knn": 0.54}, {"train_s": 20.0, "knn": 0.56},
             {"train_s": 30.0, "knn": 0.40}, {"train_s": 40.0, "knn": 0.60}]  # fmt: skip
    assert ttl.time_to_reach(curve, 0.05) == 20.0
    assert ttl.time_to_reach(curve, 0.04) == 20.0  # strictly above: 0.54 is not > 0.54
    assert ttl.time_to_reach(curve, 0.2) is None
    assert ttl._median_or_none([3.0, 1.0, 2.0]) == 2.0 and ttl._median_or_none([1.0, None]) is None
    # a run that never crosses counts as infinitely slow: the median is defined while most runs cross
    assert ttl._median_or_none([3.0, None, 1.0]) == 3.0 and ttl._median_or_none([]) is None


def test_seed_ratios_compare_the_sides_seed_by_seed():
    ttl = _load_script("time_to_learn")

    def run(seed, crossing_s):  # random-init 0.2; crosses +5 points at crossing_s (None: never)
        late = 0.3 if crossing_s is not None else 0.21
        return {"seed": seed, "curve": [{"train_s": 0.0, "knn": 0.2}, {"train_s": crossing_s or 50.0, "knn": late}]}

    runs = {"ours": [run(0, 10.0), run(1, 20.0), run(2, 30.0)], "lightly": [run(0, 15.0), run(1, 10.0), run(2, None)]}
    assert ttl.seed_ratios(runs, 0.05) == {"0": 1.5, "1": 0.5, "2": None}


def test_core_modules_import_without_the_optional_packages():
    """The GPU machine has no pycocotools, lightly, kornia, submitit or detectron2: only detection may need them."""
    code = """
import importlib, importlib.abc, pkgutil, sys
BLOCK = {"pycocotools", "lightly", "kornia", "submitit", "detectron2", "captum", "umap", "fvcore"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
bad = []
for pkg in ("zoo", "pretrain", "downstream", "benchmarks"):
    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        if info.name.startswith("downstream.detection."):
            continue  # detection is the part that needs detectron2
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            bad.append(f"{info.name}: {exc!r}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def _run_script(args, tmp_path, timeout=1700):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "BYOL_BENCH_PERF_RESULTS": str(tmp_path)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_time_to_learn_smoke_run_writes_both_curves_and_the_plot(tmp_path):
    script = [str(PERF / "time_to_learn.py"), "--smoke", "--side-by-side", "--seeds", "0", "1"]
    script += ["--results-dir", str(tmp_path)]
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rec = json.loads((tmp_path / "time_to_learn-digits-smoke.json").read_text())
    assert rec["details"]["side_by_side"] is True and len(rec["details"]["curves"]["ours"]) == 2
    assert rec["details"]["seeds"] == [0, 1] and set(rec["details"]["seed_ratios"]) == {"0", "1"}
    curves = rec["details"]["curves"]
    assert set(curves) == {"ours", "lightly"} and rec["details"]["dataset"] == "digits"
    for which in ("ours", "lightly"):
        curve = curves[which][0]["curve"]
        assert [p["epoch"] for p in curve] == [0, 1, 2]
        assert curve[0]["train_s"] == 0 < curve[1]["train_s"] < curve[2]["train_s"]
    # the same seed builds the same backbone on both sides: one random-init kNN per seed
    for i, seed in enumerate((0, 1)):
        assert curves["ours"][i]["seed"] == curves["lightly"][i]["seed"] == seed
        assert curves["ours"][i]["curve"][0]["knn"] == curves["lightly"][i]["curve"][0]["knn"]
    assert (tmp_path / "time_to_learn-digits-smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_gpu_check_cpu_smoke_run_reports_every_part(tmp_path):
    out = tmp_path / "gpu"
    args = [str(PERF / "gpu_check.py"), "--device", "cpu", "--smoke", "--out", str(out), "--threads", "1"]
    proc = _run_script(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    parts = summary["parts"]
    assert set(parts) == {"environment", "tests", "throughput", "byol", "detection"}
    assert all(p["status"] == "ok" or p["status"].startswith("skipped: ") for p in parts.values()), parts
    assert parts["environment"]["status"] == parts["throughput"]["status"] == parts["byol"]["status"] == "ok"
    byol = json.loads((out / "byol.json").read_text())
    assert len(byol["knn_val_top1_per_epoch"]) == 2 and 0 <= byol["knn_evaluator_test"]["top1_k20"] <= 1
    record = json.loads((out / "pretrain_throughput-cpu-resnet18-32px.json").read_text())
    assert record["sides"]["ours"]["median"] > 0 and record["device"] == "cpu"
