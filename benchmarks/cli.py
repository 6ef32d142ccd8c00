"""``byol-bench``: one console script, one sub-command per stage.

Each sub-command forwards its arguments to the ``main(argv)`` of the module that owns it, imported only
when used, so a stage's optional dependencies never slow down or break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

DISK_FULL_EXIT = 74  # sysexits.h EX_IOERR, as ``byol-bench pretrain`` exits on a full disk

# sub-command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "datasets": ("benchmarks.datasets_cli", "main", "list datasets, their splits and availability"),
    "baseline": ("benchmarks.datasets_cli", "baseline_main", "make the random-init / supervised artifacts"),
    "pretrain": ("pretrain.cli", "main", "BYOL pretraining from a YAML config + dotted overrides"),
    "export": ("pretrain.cli", "export_main", "export a run's backbone artifact (+ detectron2 .pkl)"),
    "import": ("benchmarks.import_cli", "main", "import another library's checkpoint as an artifact"),
    "eval": ("downstream.cli", "main", "evaluate an artifact with one evaluator on one dataset"),
    "run": ("benchmarks.runner.cli", "run_main", "run a benchmark suite (resumable)"),
    "leaderboard": ("benchmarks.runner.cli", "leaderboard_main", "aggregate records into leaderboard tables"),
    "rescore": (
        "downstream.detection.rescore",
        "main",
        "re-score records (detection, kNN, linear) from their kept predictions",
    ),
    "analyze": ("downstream.analysis.cli", "main", "representation analysis figures and report"),
    "interpret": (
        "benchmarks.shapes_interpretability",
        "main",
        "interpretability measures of a shapes suite's backbones and their report",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``byol-bench`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v / --verbose, before or after the command: libraries' logs and warnings on the console too
    verbose = any(a in ("-v", "--verbose") for a in argv)
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    parser = argparse.ArgumentParser(
        prog="byol-bench",
        description="Pretrain with BYOL, export backbones, evaluate transfer, publish leaderboards.",
        epilog="-v / --verbose (anywhere): also show libraries' logs and warnings (detectron2, pycocotools, torch); "
        "they are always in each job's log file.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.error(f"unknown command '{name}' (choose from {', '.join(COMMANDS)})")
    module_name, func_name, _ = COMMANDS[name]
    from zoo.logs import setup_console

    setup_console(verbose)  # before the command's imports: their warnings (torch.jit, via detectron2) are logged
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"byol-bench {name}: not built yet ({module_name} is missing)", file=sys.stderr)
            return 2
        raise
    try:
        return int(getattr(module, func_name)(rest) or 0)
    except OSError as exc:  # a full disk ends in one line naming the file and the room it needed, not a traceback
        from zoo.io import DiskFullError, disk_full_error, is_disk_full

        if not is_disk_full(exc):
            raise
        line = exc if isinstance(exc, DiskFullError) else disk_full_error(exc.filename or Path.cwd())
        print(f"byol-bench {name}: {line}", file=sys.stderr)
        return DISK_FULL_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
