"""``byol-bench import``: an external checkpoint -> our backbone artifact (logic in ``zoo.importers``)."""

from __future__ import annotations

import argparse
import json
import sys

from zoo.backbones import BACKBONES
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD
from zoo.importers import LAYOUTS, CheckpointImportError, describe_layouts, import_checkpoint


def main(argv: list[str]) -> int:
    """Import CHECKPOINT (another library's ResNet) as an artifact directory that every evaluator takes."""
    p = argparse.ArgumentParser(
        prog="byol-bench import",
        description=main.__doc__,
        epilog="layouts:\n" + describe_layouts() + "\n\nUnknown or missing keys are an error that lists them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="the file to import (.ckpt/.pth/.pt/.pth.tar, .pkl, .safetensors)")
    p.add_argument("--arch", required=True, choices=sorted(BACKBONES), help="our backbone the weights must fit")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="default: the one layout that fits")
    p.add_argument("--prefix", default=None, help="layout we do not know: torchvision names under this prefix")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="meta.input_size, the pretraining crop size; required unless the checkpoint records it (mmengine)",
    )
    p.add_argument(
        "--stem-padding",
        type=int,
        default=None,
        help="a 3x3 stem's padding where the layout does not fix it (resnet18-small: 1, no max-pool)",
    )
    p.add_argument("--mean", type=float, nargs=3, default=list(IMAGENET_MEAN), help="normalisation the source used")
    p.add_argument("--std", type=float, nargs=3, default=list(IMAGENET_STD))
    p.add_argument(
        "--force", action="store_true", help="replace the artifact at --out (refused if the folder holds other files)"
    )
    args = p.parse_args(argv)
    try:
        out = import_checkpoint(
            args.checkpoint,
            args.arch,
            args.out,
            layout=args.layout,
            prefix=args.prefix,
            input_size=args.input_size,
            mean=tuple(args.mean),
            std=tuple(args.std),
            overwrite=args.force,
            stem_padding=args.stem_padding,
        )
    except CheckpointImportError as exc:
        print(f"byol-bench import: {exc}", file=sys.stderr)
        return 1
    from zoo.artifact import read_meta

    source = read_meta(out).extra["source"]
    print(f"imported {source['path']} (layout {source['layout']}, {source['keys_imported']} tensors) -> {out}")
    if source["dropped"]:
        print(
            "dropped by the layout's rules (key names in meta.json extra.source.dropped_keys): "
            + json.dumps(source["dropped"])
        )
    if source["objects_left_unread"]:
        print("pickled objects left unread (stand-ins, never run): " + ", ".join(source["objects_left_unread"]))
    print(f"input_size {read_meta(out).input_size} from {source['input_size_from']}")
    if source["filled"]:
        print(f"set to 0 (absent from the format): {len(source['filled'])} BN num_batches_tracked")
    return 0
