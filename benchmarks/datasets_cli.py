"""``byol-bench datasets`` and ``byol-bench baseline``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

from zoo.datasets import DatasetOptions, list_datasets


def main(argv: list[str]) -> int:
    """List every registered dataset with split sizes and availability."""
    p = argparse.ArgumentParser(prog="byol-bench datasets", description=main.__doc__)
    p.add_argument("--root", help="root folder for the user datasets (imagefolder, cifar*, stl10, coco)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    rows = list_datasets(DatasetOptions(root=args.root, image_size=args.image_size))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        [
            r["name"],
            r["task"],
            "yes" if r["available"] else "no",
            ", ".join(f"{k} {v}" for k, v in r["sizes"].items()) if isinstance(r["sizes"], dict) else r["sizes"],
            r["description"],
        ]
        for r in rows
    ]
    print(tabulate(table, headers=["dataset", "task", "available", "splits", "description"]))
    return 0


def baseline_main(argv: list[str]) -> int:
    """Create a baseline artifact: ``random-init`` or ``supervised`` (trained with labels)."""
    from zoo.baselines import SupervisedConfig, random_init_artifact, supervised_artifact
    from zoo.config import ConfigError, load_config

    p = argparse.ArgumentParser(prog="byol-bench baseline", description=baseline_main.__doc__)
    p.add_argument("kind", choices=["random-init", "supervised"])
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--config", default=None, help="YAML overrides of SupervisedConfig")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. epochs=10 arch=resnet50")
    args = p.parse_intermixed_args(argv)
    try:
        cfg = load_config(SupervisedConfig, args.config, args.overrides)
    except (ConfigError, ValueError) as exc:
        p.error(str(exc))
    if args.kind == "random-init":
        path = random_init_artifact(Path(args.out), cfg.arch, cfg.seed, cfg.image_size)
    else:
        path = supervised_artifact(Path(args.out), cfg)
    print(f"wrote {args.kind} artifact to {path}")
    return 0
