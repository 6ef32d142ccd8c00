"""``byol-bench eval``: evaluate one artifact with one evaluator on one dataset, print and save the record."""

from __future__ import annotations

import argparse
import json
import sys

from tabulate import tabulate

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Evaluate ``--artifact`` (a directory or ``raw-pixels``) with ``--evaluator`` on ``--dataset``."""
    from downstream.api import FrozenCheckError, evaluate
    from downstream.registry import EVALUATORS, EvaluatorError, get_evaluator
    from zoo.artifact import ArtifactError
    from zoo.config import ConfigError
    from zoo.datasets import DatasetError, DatasetOptions

    p = argparse.ArgumentParser(prog="byol-bench eval", description=main.__doc__)
    p.add_argument("--artifact", help="artifact directory, or 'raw-pixels'")
    p.add_argument("--evaluator", help="evaluator name (--list shows them)")
    p.add_argument("--dataset", help="dataset name (byol-bench datasets lists them)")
    p.add_argument("--config", default=None, help="YAML file of evaluator config overrides")
    p.add_argument("--out", default=None, help="write the metric record (JSON) here, atomically")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="root folder of a user dataset")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the artifact's)")
    p.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset option, e.g. det_train_images=2000 det_test_images=500 (repeatable; a suite's dataset_options)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: $BYOL_BENCH_CACHE)")
    p.add_argument("--work-dir", default=None, help="evaluator scratch folder (default: a temporary one)")
    p.add_argument("--list", action="store_true", help="list the registered evaluators and exit")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    p.add_argument("overrides", nargs="*", help="evaluator config overrides, e.g. k=[10,20] protocol=standard")
    args = p.parse_intermixed_args(argv)

    if args.list:
        get_evaluator("knn")  # imports the built-ins
        rows = [[s.name, s.task, s.frozen, s.selection_rule] for s in EVALUATORS.values()]
        print(tabulate(rows, headers=["evaluator", "task", "frozen", "selection rule"]))
        return 0
    missing = [f"--{n}" for n in ("artifact", "evaluator", "dataset") if getattr(args, n) is None]
    if missing:
        p.error(f"missing {', '.join(missing)}")
    try:
        extra_options = parse_dataset_options(args.dataset_option)
    except ValueError as exc:
        p.error(str(exc))
    from pathlib import Path

    from zoo.logs import job_log

    # detectron2's and pycocotools' output go to RECORD.log beside --out (and to the console with -v)
    log_path = Path(args.out).with_suffix(".log") if args.out else None
    try:
        with job_log(log_path):
            record = evaluate(
                args.artifact,
                args.evaluator,
                args.dataset,
                dataset_options=DatasetOptions(root=args.root, image_size=args.image_size, **extra_options),
                config_path=args.config,
                overrides=args.overrides,
                seed=args.seed,
                out=args.out,
                device=args.device,
                work_dir=args.work_dir,
                cache_dir=args.cache_dir,
            )
    except (EvaluatorError, ConfigError, DatasetError, ArtifactError, FrozenCheckError) as exc:
        print(f"byol-bench eval: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        rows = [[k, f"{v:.6g}"] for k, v in record["metrics"].items()]
        print(
            f"{record['evaluator']} on {record['dataset']['name']} "
            f"({', '.join(f'{s} {n}' for s, n in record['dataset']['splits'].items())}), "
            f"artifact {record['artifact']['path']} [{record['artifact']['sha256'][:12]}], "
            f"{record['wall_time_s']:.1f} s"
        )
        print(tabulate(rows, headers=["metric", "value"]))
        if record.get("selection"):
            scalars = {k: v for k, v in record["selection"].items() if not isinstance(v, list | dict)}
            print("selection:", json.dumps(scalars))
    if args.out:
        print(f"record written to {args.out} (log: {log_path})")
    return 0


def parse_dataset_options(items: list[str]) -> dict[str, int | str | None]:
    """``KEY=VALUE`` strings → ``DatasetOptions`` keyword arguments, typed as the field is; an unknown key, a key
    with a flag of its own or a value of the wrong type is a ``ValueError`` naming it."""
    import dataclasses

    from zoo.datasets import DatasetOptions

    fields = {f.name: f for f in dataclasses.fields(DatasetOptions)}
    own_flag = {"root": "--root", "image_size": "--image-size"}
    out: dict[str, int | str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--dataset-option '{item}': expected KEY=VALUE")
        if key in own_flag:
            raise ValueError(f"--dataset-option '{key}': use {own_flag[key]}")
        if key not in fields:
            raise ValueError(
                f"--dataset-option '{key}': unknown (known: {', '.join(k for k in fields if k not in own_flag)})"
            )
        kind = fields[key].type
        if "int" in str(kind):
            try:
                out[key] = int(value)
            except ValueError:
                raise ValueError(f"--dataset-option {key}={value!r}: expected an integer") from None
        else:
            out[key] = value
    return out
