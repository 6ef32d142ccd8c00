"""Rebuild the README's performance table from the perf records in ``results/perf/*.json``.

    python benchmarks/perf/report.py                 # rewrite README.md's <!-- section:perf-table --> block
    python benchmarks/perf/report.py --print         # print the table, change nothing
    python benchmarks/perf/report.py --check         # exit 1 if the README's block is not what the files say

Only the block between ``<!-- section:perf-table -->`` and ``<!-- /section:perf-table -->`` changes; the
README is written atomically. Every row is one record (``benchmarks.perf_record``): the command that
made it, the code version and machine it ran on, its threads and load average, each side's median and
the ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.perf_record import RESULTS_DIR, load_perf_records, render_perf_table, replace_section  # noqa: E402
from zoo.io import atomic_write_text  # noqa: E402

SECTION = "perf-table"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of perf records")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the table only")
    mode.add_argument("--check", action="store_true", help="exit 1 when the README block is out of date")
    args = parser.parse_args()

    records = load_perf_records(args.results)
    try:
        where = args.results.resolve().relative_to(REPO).as_posix()
    except ValueError:
        where = str(args.results)
    body = render_perf_table(records) if records else f"(no perf records in {where} yet)"
    if args.print:
        print(body)
        return
    text = args.readme.read_text(encoding="utf-8")
    new = replace_section(text, SECTION, body)
    if args.check:
        if new != text:
            sys.exit(f"{args.readme}'s {SECTION} block differs from {args.results}; run benchmarks/perf/report.py")
        print(f"{args.readme} is up to date with {len(records)} perf records")
        return
    if new != text:
        atomic_write_text(args.readme, new)
    print(f"{args.readme}: {SECTION} block rebuilt from {len(records)} records in {args.results}")


if __name__ == "__main__":
    main()
