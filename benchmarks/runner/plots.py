"""Figures of a leaderboard: per-metric bar charts, metric-vs-config curves (paper Table 5a), loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from zoo.io import atomic_write_with

from .leaderboard import Leaderboard

__all__ = ["bar_charts", "bar_data", "curve_plot", "loss_curves", "lookup"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    _plt().close(fig)
    return path


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def lookup(d: dict[str, Any], dotted: str) -> Any:
    """``lookup({"byol": {"tau_base": 0.9}}, "byol.tau_base") == 0.9`` (None when absent)."""
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def bar_data(lb: Leaderboard, metric: str) -> tuple[list[str], list[float], list[float]] | None:
    """``(variants, means, stds)`` of one ``group.metric`` over the variants that have it (None: nobody has it).

    Values are in the displayed unit (percent for accuracies and AP, ``Leaderboard.display``). A variant
    without the metric (e.g. the projector of a baseline that has none) is left out rather than drawn as a
    bar at 0, which would read as a measured zero.
    """
    group, name = metric.split(".", 1)
    if (group, name) not in lb.mean.columns:
        return None
    mean = lb.mean[(group, name)].dropna()
    if mean.empty:
        return None
    std = lb.std[(group, name)].reindex(mean.index).fillna(0.0)
    k = lb.display((group, name))[0]
    return list(mean.index), [float(v) * k for v in mean.values], [float(v) * k for v in std.values]


def bar_charts(lb: Leaderboard, metrics: list[str], out_dir: Path, note: str = "") -> list[Path]:
    """One bar chart per ``group.metric``: seed mean with ± std error bars, one bar per variant that has it."""
    plt = _plt()
    paths = []
    for m in metrics:
        data = bar_data(lb, m)
        if data is None:
            continue
        variants, mean, std = data
        group, name = m.split(".", 1)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(mean) + 1.5), 3.2))
        labels = [lb.labels.get(v, v) for v in variants]
        colors = ["tab:gray" if v == lb.baseline else "tab:blue" for v in variants]
        ax.bar(range(len(mean)), mean, yerr=std, capsize=3, color=colors)
        ax.set_xticks(range(len(mean)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(lb.header((group, name), sep="."))
        ax.set_title(f"{m} (mean ± std over seeds)" + (f"\n{note}" if note else ""), fontsize=9)
        paths.append(_save(fig, out_dir / f"bar_{_slug(group)}_{_slug(name)}.png"))
    return paths


def curve_plot(
    lb: Leaderboard, x_of: dict[str, float], metrics: list[str], xlabel: str, out_path: Path, note: str = ""
) -> Path | None:
    """Metric vs a config value (one point per variant, ± std), variants placed in order of the value.

    The x axis is categorical (values like 0, 0.9, 0.99, 0.999, 1 are unevenly spaced), as in Table 5a.
    """
    pts = sorted((x, v) for v, x in x_of.items() if v in lb.mean.index and x is not None)
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    shown_units = set()
    for m in metrics:
        group, name = m.split(".", 1)
        if (group, name) not in lb.mean.columns:
            continue
        k, unit = lb.display((group, name))
        shown_units.add(unit)
        ys = [lb.mean.loc[v, (group, name)] * k for _, v in pts]
        es = [lb.std.loc[v, (group, name)] for _, v in pts]
        es = [0.0 if e is None or math.isnan(e) else e * k for e in es]
        ax.errorbar(range(len(pts)), ys, yerr=es, marker="o", capsize=3, label=lb.header((group, name), sep="."))
    ax.set_xticks(range(len(pts)), [f"{x:g}" for x, _ in pts])
    ax.set_xlabel(xlabel)
    unit = next(iter(shown_units)) if len(shown_units) == 1 else None
    ax.set_ylabel("metric (mean ± std over seeds)" + (f" ({unit})" if unit else ""))
    ax.legend(fontsize=8)
    if note:
        ax.set_title(note, fontsize=9)
    return _save(fig, out_path)


def loss_curves(runs: dict[str, list[Path]], out_dir: Path, note: str = "") -> list[Path]:
    """Pretraining loss per step (and the in-run kNN per epoch when logged), one colour per variant."""
    plt = _plt()
    series: dict[str, list[tuple[list[float], list[float], list[float], list[float]]]] = {}
    for variant, files in runs.items():
        for f in files:
            if not f.is_file():
                continue
            steps, losses, epochs, knn = [], [], [], []
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if isinstance(row.get("loss"), int | float) and "step" in row:
                    steps.append(row["step"])
                    losses.append(row["loss"])
                if isinstance(row.get("knn_val_top1"), int | float):
                    epochs.append(row.get("epoch", len(epochs) + 1))
                    knn.append(100.0 * row["knn_val_top1"])  # a fraction in the log; percent, as in the tables
            series.setdefault(variant, []).append((steps, losses, epochs, knn))
    if not series:
        return []
    paths = []
    cmap = plt.get_cmap("tab10")
    for what, idx, ylabel in (("loss", (0, 1), "BYOL loss"), ("knn", (2, 3), "in-run kNN val top-1 (%)")):
        if not any(s[idx[1]] for runs_ in series.values() for s in runs_):
            continue
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        for i, (variant, runs_) in enumerate(series.items()):
            for j, s in enumerate(runs_):
                ax.plot(s[idx[0]], s[idx[1]], color=cmap(i % 10), alpha=0.8, lw=1, label=variant if j == 0 else None)
        ax.set_xlabel("step" if what == "loss" else "epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title((f"pretraining {ylabel}, every seed" + (f"\n{note}" if note else "")), fontsize=9)
        paths.append(_save(fig, out_dir / f"pretrain_{what}.png"))
    return paths
