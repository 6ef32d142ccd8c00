"""Detection AP against iterations and CPU seconds, from the ``detection`` records of a results folder.

A detection record made with ``eval_period`` keeps, per trial, the COCO box AP at every evaluation and the
training wall and process-CPU seconds spent before it (``selection.curves``). This script groups the records
by evaluation (``benchmark.group``) and variant, averages over seeds at each iteration (mean ± sample std),
and writes ``OUT/curves.json``, ``OUT/curves.md`` (the table) and ``OUT/curves.png`` (AP against iterations
and against training CPU-minutes, one panel per evaluation, one line per variant with its seed band).
``--variant-of`` maps variant names to the row they belong to by a regular expression's first group (for
suites whose variants are one artifact per seed, ``supervised-s0``, ``supervised-s1``…).

    .venv/bin/python benchmarks/detection_curves.py results/detection-shapes-curves --out OUT \\
        [--variant-of '(.*)-s\\d+$']
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.io import atomic_write_json, atomic_write_text  # noqa: E402
from zoo.records import RecordError, read_record  # noqa: E402

METRICS = ("AP", "AP50")


def collect(results: Path, variant_of: str | None = None) -> dict[str, dict[str, dict[int, list[dict[str, Any]]]]]:
    """``{"group (split)": {row: {seed: curve}}}`` of every detection record under ``results/records`` with a curve."""
    out: dict[str, dict[str, dict[int, list[dict[str, Any]]]]] = defaultdict(lambda: defaultdict(dict))
    files = sorted((results / "records").glob("*.json"))
    if not files:
        raise SystemExit(f"{results / 'records'}: no records")
    for f in files:
        try:
            rec = read_record(f).data  # checksum verified: a tampered record stops the script, naming the file
        except RecordError as exc:
            raise SystemExit(str(exc)) from exc
        if rec.get("evaluator") != "detection":
            continue
        curves = rec.get("selection", {}).get("curves") or []
        if not curves or not curves[0]:
            continue
        bench = rec.get("benchmark", {})
        row = bench.get("variant", f.stem)
        if variant_of and (m := re.fullmatch(variant_of, row)):
            row = m.group(1)
        split = rec.get("selection", {}).get("split") or rec.get("config", {}).get("test_split", "?")
        group = f"{bench.get('group', 'detection')} ({split})"  # the split the AP was measured on
        for t, curve in enumerate(curves):  # each trial is one more seed of the row
            out[group][row][int(bench.get("seed", 0)) * 100 + t] = curve
    return out


def summarise(curves: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per iteration: mean and sample std over seeds of AP, AP50 and the CPU seconds (only where all seeds have it)."""
    by_iter: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for curve in curves.values():
        for point in curve:
            by_iter[int(point["iter"])].append(point)
    rows = []
    for it in sorted(by_iter):
        pts = by_iter[it]
        if len(pts) != len(curves):
            continue
        row: dict[str, Any] = {"iter": it, "n": len(pts)}
        for key in (*METRICS, "train_cpu_seconds", "train_seconds"):
            vals = [float(p[key]) for p in pts if p.get(key) is not None]
            row[key] = statistics.fmean(vals) if vals else None
            row[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def table(summary: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """A Markdown table per evaluation: AP mean ± std per row at each evaluated iteration."""
    lines = []
    for group, rows in summary.items():
        iters = sorted({p["iter"] for r in rows.values() for p in r})
        lines += [f"### {group}", "", "| row | " + " | ".join(f"{i}" for i in iters) + " |"]
        lines.append("| --- |" + " --- |" * len(iters))
        for name, pts in rows.items():
            at = {p["iter"]: p for p in pts}
            cells = [f"{at[i]['AP']:.1f} ± {at[i]['AP_std']:.1f}" if i in at else "" for i in iters]
            lines.append(f"| {name} (n={pts[0]['n'] if pts else 0}) | " + " | ".join(cells) + " |")
        cpu = [p["train_cpu_seconds"] for r in rows.values() for p in r[-1:] if p.get("train_cpu_seconds")]
        if cpu:
            lines += ["", f"Training CPU-minutes at the last point: {min(cpu) / 60:.1f}–{max(cpu) / 60:.1f}."]
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(summary)
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.6 * len(groups)), squeeze=False)
    for (ax_it, ax_cpu), group in zip(axes, groups, strict=True):
        for name, pts in summary[group].items():
            it = [p["iter"] for p in pts]
            cpu = [(p["train_cpu_seconds"] or 0) / 60 for p in pts]
            ap = [p["AP"] for p in pts]
            lo = [p["AP"] - p["AP_std"] for p in pts]
            hi = [p["AP"] + p["AP_std"] for p in pts]
            for ax, x in ((ax_it, it), (ax_cpu, cpu)):
                (line,) = ax.plot(x, ap, marker="o", label=f"{name} (n={pts[0]['n']})")
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        ax_it.set(title=f"{group}: AP against iterations", xlabel="iteration", ylabel="box AP")
        ax_cpu.set(title=f"{group}: AP against training CPU time", xlabel="training CPU-minutes", ylabel="box AP")
        ax_it.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="+", help="results folders (each with records/)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variant-of", default=None, help="regex whose first group is the row of a variant name")
    args = p.parse_args()
    summary: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    raw: dict[str, Any] = {}
    for results in args.results:
        for group, rows in collect(results, args.variant_of).items():
            for name, curves in rows.items():
                summary[group][name] = summarise(curves)
                raw.setdefault(group, {})[name] = {str(k): v for k, v in curves.items()}
    if not summary:
        raise SystemExit("no detection record with a curve (run the evaluator with eval_period)")
    atomic_write_json(args.out / "curves.json", {"summary": summary, "curves": raw})
    md = table(summary)
    atomic_write_text(args.out / "curves.md", md)
    plot(summary, args.out / "curves.png")
    print(md)


if __name__ == "__main__":
    main()
