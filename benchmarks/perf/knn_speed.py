"""Our chunked weighted kNN vs the bare matrix product of the same sizes, in the same run.

    .venv/bin/python benchmarks/perf/knn_speed.py [--bank 50000] [--queries 10000] [--dim 512] [--chunk 1024]

Prints the wall time of ``knn_scores`` (k = 20 and 200, T = 0.07: l2-normalisation, similarity blocks,
top-k, weighted votes) next to one bare ``torch.mm(queries, bank.T)`` (which materialises the whole
Q × N similarity matrix), and the peak resident-memory growth of each. Ours runs first, so its peak is
not hidden by the bare product's. Target (issue #4): ours ≤ 1.5× the bare product, memory bounded by
the chunk (chunk × N floats for the similarity block).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from downstream.knn import knn_scores


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
    args = p.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(args.bank, args.dim, generator=g).to(dev)
    labels = torch.randint(0, args.classes, (args.bank,), generator=g).to(dev)
    queries = torch.randn(args.queries, args.dim, generator=g).to(dev)
    knn_scores(bank[:2048], labels[:2048], queries[:256], args.classes, [20], 0.07)  # warm-up
    sync()

    base = rss_peak_mib()
    t0 = time.perf_counter()
    knn_scores(bank, labels, queries, args.classes, [20, 200], 0.07, chunk_size=args.chunk)
    sync()
    ours = time.perf_counter() - t0
    ours_mem = rss_peak_mib() - base

    base = rss_peak_mib()
    t0 = time.perf_counter()
    sim = torch.mm(queries, bank.t())
    sync()
    bare = time.perf_counter() - t0
    bare_mem = rss_peak_mib() - base
    del sim

    block = args.chunk * args.bank * 4 / 2**20
    print(
        f"kNN {args.queries} queries x {args.bank} bank, {args.dim}-d, {args.classes} classes, "
        f"device {dev}, {torch.get_num_threads()} threads"
    )
    print(f"ours (k=20,200, chunk {args.chunk}): {ours:7.2f} s   peak RSS +{ours_mem:6.0f} MiB (block {block:.0f} MiB)")
    print(f"bare torch.mm:                 {bare:7.2f} s   peak RSS +{bare_mem:6.0f} MiB")
    print(f"ratio ours / bare mm: {ours / bare:.2f}x")


if __name__ == "__main__":
    main()
