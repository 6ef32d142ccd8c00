"""``byol-bench pretrain CONFIG [key=value ...] --out RUN_DIR`` and ``byol-bench export RUN_DIR``.

Under ``torchrun`` every process runs the same command; ``train`` reads the rank from the environment.

Exit codes of ``pretrain``: 0 done (or stopped by ``run.stop_after_epochs``); 1 training diverged or no
usable checkpoint; 2 config error; 74 (``EX_IOERR``) disk full, naming the path and the space needed;
75 (``EX_TEMPFAIL``) stopped by SIGTERM / SIGUSR1 after checkpointing: run the same command to resume.
"""

from __future__ import annotations

import argparse
import sys

from zoo.config import ConfigError

__all__ = ["main", "export_main", "DISK_FULL_EXIT"]

DISK_FULL_EXIT = 74  # sysexits.h EX_IOERR


def main(argv: list[str]) -> int:
    """Pretrain with BYOL; auto-resumes when ``--out`` holds a checkpoint unless ``--no-resume``."""
    parser = argparse.ArgumentParser(
        prog="byol-bench pretrain",
        description="BYOL pretraining, e.g. byol-bench pretrain pretrain/configs/byol.yaml run.epochs=5 --out runs/b",
    )
    parser.add_argument("config", help="YAML config (e.g. pretrain/configs/byol.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.base_lr=0.5 byol.tau_base=0.99")
    parser.add_argument("--out", required=True, help="run directory (created; resumed if it holds a checkpoint)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="resume", action="store_true", default=True, help="resume (default)")
    resume.add_argument("--no-resume", dest="resume", action="store_false", help="start from scratch")
    args = parser.parse_args(argv)

    from pretrain.checkpoint import CheckpointError, DiskFull
    from pretrain.config import load_pretrain_config
    from pretrain.train import PREEMPTED_EXIT, Preempted, TrainingDiverged, train

    try:
        cfg = load_pretrain_config(args.config, args.overrides)
        if not args.resume:
            _clear_run(args.out)
        run_dir = train(cfg, args.out, resume=args.resume)
    except ConfigError as exc:
        print(f"byol-bench pretrain: config error: {exc}", file=sys.stderr)
        return 2
    except (TrainingDiverged, CheckpointError) as exc:
        print(f"byol-bench pretrain: {exc}", file=sys.stderr)
        return 1
    except DiskFull as exc:
        print(f"byol-bench pretrain: {exc}", file=sys.stderr)
        return DISK_FULL_EXIT
    except Preempted as exc:
        print(f"byol-bench pretrain: {exc}", file=sys.stderr)
        return PREEMPTED_EXIT
    print(run_dir)
    return 0


def _clear_run(out: str) -> None:
    """``--no-resume``: remove the checkpoint, metrics and artifact of a previous run in ``out``."""
    import os
    import shutil
    from pathlib import Path

    if int(os.environ.get("RANK", "0")) != 0:
        return
    run = Path(out)
    for name in ("checkpoints", "artifact", "tensorboard"):
        shutil.rmtree(run / name, ignore_errors=True)
    for name in ("metrics.jsonl", "train.log"):
        (run / name).unlink(missing_ok=True)


def export_main(argv: list[str]) -> int:
    """Export a run's backbone (default: online network) as an artifact + detectron2 ``.pkl``."""
    parser = argparse.ArgumentParser(prog="byol-bench export", description="export a BYOL run's backbone artifact")
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="artifact directory (default RUN_DIR/artifact)")
    parser.add_argument(
        "--network",
        choices=("online", "target"),
        default="online",
        help="online (default: the encoder BYOL keeps, paper Sec. 3.1) or target (EMA) backbone",
    )
    args = parser.parse_args(argv)
    from pretrain.checkpoint import CheckpointError, DiskFull
    from pretrain.export import export_run

    try:
        out = export_run(args.run_dir, args.out, network=args.network)
    except (FileNotFoundError, ConfigError) as exc:
        print(f"byol-bench export: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        print(f"byol-bench export: {exc}", file=sys.stderr)
        return 1
    except DiskFull as exc:
        print(f"byol-bench export: {exc}", file=sys.stderr)
        return DISK_FULL_EXIT
    print(out)
    return 0
