"""The fast linear probe on grayscale raw pixels: every pixel is three equal columns, solved as one.

Times ``fit_logistic_regression`` for a fixed number of L-BFGS iterations at one λ on the same standardised
features, once on all columns (as before the merge) and once on the merged ones (as shipped,
``downstream.linear.merge_duplicate_columns``); both solve the same problem (their objectives agree at
convergence, tested in tests/downstream/test_linear.py; after a fixed number of iterations they differ a
little, as two L-BFGS paths do). Optionally
adds the wall time of a whole ``linear`` record (the λ sweep, as a suite ran it) for the absolute figure.

    .venv/bin/python benchmarks/perf/linear_columns.py --dataset fashion-mnist --image-size 32 \\
        [--record results/fashion-mnist/records/<raw-pixels linear job>.json]

Goal (issue #20): the raw-pixel probe on 54,000 × 3,072 Fashion-MNIST pixels, which ran > 27 min without
finishing, finishes in minutes. ``results/perf/<name>.json`` (``--name``, ``--no-record``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.perf_record import load_average, perf_record, side, write_perf_record  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--l2", type=float, default=1e-2, help="λ of the timed fits")
    p.add_argument("--iters", type=int, default=20, help="L-BFGS iterations per timed fit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", type=Path, default=None, help="a linear record on raw pixels: its wall time")
    p.add_argument("--name", default="linear_columns-fashion-mnist")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    import numpy as np
    import torch

    from downstream.linear import fit_logistic_regression, logistic_objective, merge_duplicate_columns, standardize
    from zoo.datasets import load_dataset

    torch.set_num_threads(args.threads)
    load_before = load_average()
    train = load_dataset(args.dataset, "train", image_size=args.image_size)
    # raw pixels' features: each channel normalised by the dataset's mean and std, flattened
    norm = (train.images.astype(np.float32) / 255.0 - np.float32(train.mean)) / np.float32(train.std)
    x = torch.from_numpy(norm.reshape(len(train), -1))
    y = torch.from_numpy(train.targets)
    (xs,) = standardize(x)
    t0 = time.perf_counter()
    (xm,) = merge_duplicate_columns(xs)
    merge_s = time.perf_counter() - t0
    rows = {}
    for name, feats in (("all columns", xs), ("merged", xm)):
        info: dict[str, float] = {}
        t0 = time.perf_counter()
        W, b = fit_logistic_regression(feats, y, train.num_classes, args.l2, max_iter=args.iters, info=info)
        wall = time.perf_counter() - t0
        obj = float(logistic_objective(feats.double(), y, W.double(), b.double(), args.l2))
        rows[name] = {"columns": feats.shape[1], "wall_s": wall, "iterations": info["iterations"], "objective": obj}
        print(f"{name:<12} {feats.shape[1]:>5} columns  {wall:7.1f} s for {info['iterations']:.0f} iterations  "
              f"objective {obj:.6f}")  # fmt: skip
    # per L-BFGS iteration: the merge is paid once per probe, the iterations hundreds of times per λ sweep
    ratio = (rows["all columns"]["wall_s"] / rows["all columns"]["iterations"]) / (
        rows["merged"]["wall_s"] / rows["merged"]["iterations"]
    )
    print(f"per iteration: all columns / merged = {ratio:.2f}x; the merge itself {merge_s:.1f} s, once per probe")
    details = {"rows": rows, "merge_s": merge_s, "l2": args.l2, "n": len(train)}
    if args.record:
        rec = json.loads(args.record.read_text())
        details["record"] = {
            "path": str(args.record),
            "wall_time_s": rec.get("wall_time_s"),
            "columns": rec.get("selection", {}).get("columns"),
            "l2_fitted": len(rec.get("selection", {}).get("l2_grid", [])),
            "top1": rec["metrics"].get("top1"),
        }
        print(f"whole λ sweep as the suite ran it: {rec.get('wall_time_s', float('nan')):.0f} s ({args.record})")
    if args.no_record:
        return
    record = perf_record(
        args.name,
        what=f"fast linear probe on {args.dataset} raw pixels ({len(train)} × {x.shape[1]}): "
        f"{args.iters} L-BFGS iterations at λ {args.l2}, all columns vs merged duplicates",
        metric="seconds per iteration",
        unit="s",
        higher_is_better=False,
        sides={
            "ours": side("merged columns (shipped), per iteration", [rows["merged"]["wall_s"] / args.iters]),
            "before": side("all columns (before), per iteration", [rows["all columns"]["wall_s"] / args.iters]),
        },
        ratio=ratio,
        ratio_definition="seconds per L-BFGS iteration, all columns / merged, higher is better",
        goal="the raw-pixel probe finishes in minutes (it ran > 27 min unfinished)",
        threads=args.threads,
        device="cpu",
        load_before=load_before,
        details=details,
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


if __name__ == "__main__":
    main()
