"""``byol-bench analyze``: diagnostics, pictures and a Markdown report for a few artifacts.

    byol-bench analyze --artifact byol=RUN/artifact --artifact no-predictor=RUN2/artifact \\
        --dataset digits-m --out results/analysis [--leaderboard-dir DIR] [--set layerwise.linear=false]
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must be NAME=VALUE, got '{item}'")
        if name in out:
            raise ValueError(f"{what} name '{name}' given twice")
        out[name] = value
    return out


def main(argv: list[str]) -> int:
    """Analyse ``--artifact NAME=DIR`` … on ``--dataset``; write records, figures and ``report.md`` to ``--out``."""
    from downstream.analysis.report import build_report
    from downstream.api import FrozenCheckError
    from downstream.registry import EvaluatorError
    from zoo.artifact import ArtifactError
    from zoo.config import ConfigError
    from zoo.datasets import DatasetError

    p = argparse.ArgumentParser(prog="byol-bench analyze", description=main.__doc__)
    p.add_argument("--artifact", action="append", default=[], help="NAME=DIR (or NAME=raw-pixels); repeat")
    p.add_argument("--dataset", default="digits-m")
    p.add_argument("--out", required=True, help="output folder (records/, figures/, report.md)")
    p.add_argument("--suite", default=None, help="title of the report (default: the --out folder name)")
    p.add_argument("--leaderboard-dir", default=None, help="folder with the suite's leaderboard.md and plots/")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--note", default="", help="one paragraph under the title (scale, what the runs are)")
    p.add_argument("--set", action="append", default=[], help="EVALUATOR.KEY=VALUE config override; repeat")
    args = p.parse_args(argv)
    try:
        artifacts = _pairs(args.artifact, "--artifact")
        if not artifacts:
            p.error("give at least one --artifact NAME=DIR")
        overrides: dict[str, list[str]] = {}
        for item in args.set:
            ev, dot, rest = item.partition(".")
            if not dot or "=" not in rest:
                raise ValueError(f"--set must be EVALUATOR.KEY=VALUE, got '{item}'")
            overrides.setdefault(ev, []).append(rest)
        from pathlib import Path

        path = build_report(
            args.suite or Path(args.out).name,
            None,
            artifacts,
            args.out,
            dataset=args.dataset,
            image_size=args.image_size,
            leaderboard_dir=args.leaderboard_dir,
            overrides=overrides,
            seed=args.seed,
            device=args.device,
            cache_dir=args.cache_dir,
            note=args.note,
        )
    except (ValueError, EvaluatorError, ConfigError, DatasetError, ArtifactError, FrozenCheckError) as exc:
        print(f"byol-bench analyze: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0
