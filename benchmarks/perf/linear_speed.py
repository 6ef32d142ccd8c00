"""Fast (L-BFGS on cached features) vs standard (SGD through the frozen backbone) linear probe.

Same backbone, same dataset, same splits; prints both accuracies and wall times. The fast protocol is timed
cold (features extracted into an empty cache, which is part of its cost) and warm (cache already there).

    .venv/bin/python benchmarks/perf/linear_speed.py --artifact DIR [--dataset digits-m] [--epochs 30]

Target (issue #4): fast within 0.5 points of standard, and ≥ 20× less time.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from downstream.api import evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True, help="artifact directory (or raw-pixels)")
    p.add_argument("--dataset", default="digits-m")
    p.add_argument("--epochs", type=int, default=30, help="standard protocol epochs")
    p.add_argument("--device", default=None)
    p.add_argument("standard_overrides", nargs="*", help="extra overrides of the standard protocol, e.g. hflip=false")
    args = p.parse_args()

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


if __name__ == "__main__":
    main()
