"""Fast (L-BFGS on cached features) vs standard (SGD through the frozen backbone) linear probe.

Same backbone, same dataset, same splits; prints both accuracies and wall times. The fast protocol is timed
cold (features extracted into an empty cache, which is part of its cost) and warm (cache already there).

    .venv/bin/python benchmarks/perf/linear_speed.py --artifact DIR [--dataset digits-m] [--epochs 30]

Target (issue #4): fast within 0.5 points of standard, and ≥ 20× less time. The figures go to
``results/perf/linear_speed.json`` (``benchmarks.perf_record``; ``--name``, ``--no-record``): the sides are the
warm-cache fast probe and the standard one, the ratio is standard time / fast time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.perf_record import load_average, perf_record, side, write_perf_record  # noqa: E402
from downstream.api import evaluate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True, help="artifact directory (or raw-pixels)")
    p.add_argument("--dataset", default="digits-m")
    p.add_argument("--epochs", type=int, default=30, help="standard protocol epochs")
    p.add_argument("--device", default=None)
    p.add_argument("standard_overrides", nargs="*", help="extra overrides of the standard protocol, e.g. hflip=false")
    p.add_argument("--name", default="linear_speed", help="results/perf/<name>.json")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="linear-speed-") as cache:
        rows = []
        for name, overrides in [
            ("fast (cold cache)", ["protocol=fast"]),
            ("fast (warm cache)", ["protocol=fast"]),
            ("standard", ["protocol=standard", f"epochs={args.epochs}", *args.standard_overrides]),
        ]:
            t0 = time.perf_counter()
            rec = evaluate(
                args.artifact, "linear", args.dataset, overrides=overrides, cache_dir=cache, device=args.device
            )
            rows.append((name, rec["metrics"]["top1"], rec["metrics"]["val_top1"], time.perf_counter() - t0))
    print(f"linear probe on {args.dataset}, artifact {args.artifact}, device {rec['machine']['device']}")
    print(f"standard protocol config: {rec['config']}")
    print(f"{'protocol':<20} {'test top1':>9} {'val top1':>9} {'wall s':>8}")
    for name, top1, val, wall in rows:
        print(f"{name:<20} {100 * top1:9.2f} {100 * val:9.2f} {wall:8.1f}")
    std_t, std_acc = rows[2][3], rows[2][1]
    for name, top1, _, wall in rows[:2]:
        print(f"{name}: {100 * (top1 - std_acc):+.2f} points vs standard, {std_t / wall:.1f}x less time")
    if args.no_record:
        return
    import torch

    accuracy = {name: {"test_top1": top1, "val_top1": val, "wall_s": wall} for name, top1, val, wall in rows}
    record = perf_record(
        args.name,
        what=f"linear probe on {args.dataset}: fast (L-BFGS, warm cache) vs standard ({args.epochs} epochs SGD)",
        metric="seconds",
        unit="s",
        higher_is_better=False,
        sides={
            "ours": side("fast, warm cache", [rows[1][3]], test_top1=rows[1][1]),
            "standard": side("standard", [rows[2][3]], test_top1=rows[2][1]),
        },
        ratio=std_t / rows[1][3],
        ratio_definition="standard time / fast time, higher is better",
        goal="≥ 20× less time, within 0.5 points",
        threads=torch.get_num_threads(),
        device=str(rec["machine"]["device"]),
        load_before=load_before,
        details={"rows": accuracy, "artifact": str(args.artifact), "standard_config": rec["config"]},
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


if __name__ == "__main__":
    main()
