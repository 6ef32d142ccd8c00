"""Val kNN curves of pretraining runs side by side: the evidence a recipe is chosen on.

Each run's ``metrics.jsonl`` holds one ``kind: epoch`` record per epoch with the in-run val kNN top-1
(``knn_val_top1``; epoch 0 = the initialisation) and the training seconds so far (``train_s``). This script
copies each run's ``config.yaml``, ``derived.json`` and ``metrics.jsonl`` under ``OUT/<name>/``, writes
``OUT/curves.json`` (per run: epoch, step, train seconds, val kNN) and ``OUT/curves.png`` (val kNN against
steps and against training seconds), and prints the table. ``--note NAME=TEXT`` attaches a line to a run.

    .venv/bin/python benchmarks/recipe_curves.py --out results/fashion-mnist/recipes A=runs/a B=runs/b
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.checkpoint import read_metrics  # noqa: E402
from zoo.io import atomic_write_json, atomic_write_with  # noqa: E402


def curve(run_dir: Path) -> list[dict[str, Any]]:
    """The run's epoch records: ``epoch``, ``step``, ``train_s`` (0 at the initialisation) and ``knn_val_top1``."""
    rows = [r for r in read_metrics(run_dir) if r.get("kind") == "epoch" and "knn_val_top1" in r]
    if not rows:
        raise SystemExit(f"{run_dir / 'metrics.jsonl'}: no epoch record with knn_val_top1")
    out, offset, last = [], 0.0, 0.0
    for r in rows:
        row = {
            "epoch": r["epoch"],
            "step": r["step"],
            "train_s": r.get("train_s", 0.0),
            "knn_val_top1": r["knn_val_top1"],
        }
        if r["epoch"] > 0 and row["train_s"] + offset < last:
            # runs before 2026-12-06 restarted train_s at 0 on resume: go on from the last epoch's clock, which
            # leaves out the steps between that epoch's end and the checkpoint resumed from (under one epoch)
            offset = last
            row["clock_restarted"] = True
        row["train_s"] += offset
        last = row["train_s"]
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--note", action="append", default=[], help="NAME=TEXT")
    args = p.parse_args()
    notes = dict(n.split("=", 1) for n in args.note)
    curves: dict[str, Any] = {}
    for spec in args.runs:
        name, _, run = spec.partition("=")
        run_dir = Path(run)
        curves[name] = {"run_dir": str(run_dir), "note": notes.get(name, ""), "epochs": curve(run_dir)}
        dest = args.out / name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("config.yaml", "derived.json", "metrics.jsonl"):
            # a run already published under OUT (NAME=OUT/NAME) is read in place: re-plotting adds runs to it
            if (run_dir / f).is_file() and (dest / f).resolve() != (run_dir / f).resolve():
                shutil.copyfile(run_dir / f, dest / f)
    atomic_write_json(args.out / "curves.json", curves)
    for name, c in curves.items():
        knn = " / ".join(f"{e['knn_val_top1']:.3f}" for e in c["epochs"])
        print(f"{name:<28} val kNN by epoch: {knn}  {c['note']}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for i, (name, c) in enumerate(curves.items()):
        e = c["epochs"]
        style = {"marker": "os^"[i // 20 % 3], "color": plt.get_cmap("tab20")(i % 20), "label": name}  # distinct
        axes[0].plot([r["step"] for r in e], [r["knn_val_top1"] for r in e], **style)
        axes[1].plot([r["train_s"] for r in e], [r["knn_val_top1"] for r in e], **style)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training seconds (wall, this process; a shared 2-core machine)")
    axes[0].set_ylabel("val kNN top-1 (k 20)")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # beside
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("val kNN of each recipe")
    atomic_write_with(
        args.out / "curves.png", lambda path: fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    )
    print(f"wrote {args.out / 'curves.json'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
