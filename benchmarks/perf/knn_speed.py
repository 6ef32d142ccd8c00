"""Our chunked weighted kNN vs the bare matrix product of the same sizes, in the same run.

    .venv/bin/python benchmarks/perf/knn_speed.py [--bank 50000] [--queries 10000] [--dim 512] [--chunk 1024]

Prints the wall time of ``knn_scores`` (k = 20 and 200, T = 0.07: l2-normalisation, similarity blocks,
top-k, weighted votes) next to one bare ``torch.mm(queries, bank.T)`` (which materialises the whole
Q × N similarity matrix), and the peak resident-memory growth of each. Ours runs first, so its peak is
not hidden by the bare product's. Target (issue #4): ours ≤ 1.5× the bare product, memory bounded by
the chunk (chunk × N floats for the similarity block).

With ``--repeats N`` both are timed N times, alternating, and the medians compared. The figures go to
``results/perf/knn_speed.json`` (``benchmarks.perf_record``; ``--name``, ``--no-record``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.perf_record import load_average, perf_record, side, write_perf_record  # noqa: E402
from downstream.knn import knn_scores  # noqa: E402


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bank", type=int, default=50_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1, help="timings per side, alternating; medians compared")
    p.add_argument("--name", default="knn_speed", help="results/perf/<name>.json")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    load_before = load_average()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(args.bank, args.dim, generator=g).to(dev)
    labels = torch.randint(0, args.classes, (args.bank,), generator=g).to(dev)
    queries = torch.randn(args.queries, args.dim, generator=g).to(dev)
    knn_scores(bank[:2048], labels[:2048], queries[:256], args.classes, [20], 0.07)  # warm-up
    sync()

    ours_t, bare_t, ours_mem, bare_mem = [], [], 0.0, 0.0
    for _ in range(args.repeats):
        base = rss_peak_mib()
        t0 = time.perf_counter()
        knn_scores(bank, labels, queries, args.classes, [20, 200], 0.07, chunk_size=args.chunk)
        sync()
        ours_t.append(time.perf_counter() - t0)
        ours_mem = max(ours_mem, rss_peak_mib() - base)

        base = rss_peak_mib()
        t0 = time.perf_counter()
        sim = torch.mm(queries, bank.t())
        sync()
        bare_t.append(time.perf_counter() - t0)
        bare_mem = max(bare_mem, rss_peak_mib() - base)
        del sim
    ours_side = side("knn_scores, chunked", ours_t, peak_rss_growth_mib=ours_mem)
    bare_side = side("bare torch.mm", bare_t, peak_rss_growth_mib=bare_mem)
    ours, bare = ours_side["median"], bare_side["median"]

    block = args.chunk * args.bank * 4 / 2**20
    print(
        f"kNN {args.queries} queries x {args.bank} bank, {args.dim}-d, {args.classes} classes, "
        f"device {dev}, {torch.get_num_threads()} threads"
    )
    print(f"ours (k=20,200, chunk {args.chunk}): {ours:7.2f} s   peak RSS +{ours_mem:6.0f} MiB (block {block:.0f} MiB)")
    print(f"bare torch.mm:                 {bare:7.2f} s   peak RSS +{bare_mem:6.0f} MiB")
    print(f"ratio ours / bare mm: {ours / bare:.2f}x")
    if args.no_record:
        return
    record = perf_record(
        args.name,
        what=f"weighted kNN, {args.queries} queries x {args.bank} bank, {args.dim}-d",
        metric="seconds",
        unit="s",
        higher_is_better=False,
        sides={"ours": ours_side, "bare_mm": bare_side},
        ratio=ours / bare,
        ratio_definition="ours / bare mm time, lower is better",
        goal="≤ 1.5×",
        threads=torch.get_num_threads(),
        device=str(dev),
        load_before=load_before,
        details={"args": {k: str(v) for k, v in vars(args).items()}, "block_mib": block},
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


if __name__ == "__main__":
    main()
