"""One BYOL training step on the CPU in float32 against bfloat16 autocast (``run.amp: bf16``).

Times the step the trainer runs (both views through the online and target networks, the symmetric loss,
backward, an SGD step and the EMA update of the target) for the model of a pretraining config, on random
inputs of its image size, in channels_last as the trainer runs it. The two precisions alternate,
``--repeats`` times each, so that drift in a shared machine's load falls on both; medians are compared.
The augmentations are not timed (≈ 0.015 s for two views of 64 images at 48 px, the same in both).

    .venv/bin/python benchmarks/perf/cpu_bf16.py --config pretrain/configs/fashion-mnist-byol-48px-9ep.yaml \\
        --batch 64 --threads 1

Why: CPUs with AVX-512 BF16 / AMX (this project's 2-core Xeons) run oneDNN's bf16 convolutions faster than
float32 ones, and on a CPU the steps are what the Fashion-MNIST recipe is short of (issue #20).
``results/perf/<name>.json`` (``--name``, ``--no-record``).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.perf_record import load_average, perf_record, side, write_perf_record  # noqa: E402


def cpu_flags() -> list[str]:
    """The bf16-related flags of this CPU from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if "bf16" in f or f.startswith("amx"))


def step_seconds(config: Path, batch: int, bf16: bool, steps: int, warmup: int) -> list[float]:
    """Wall seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    import torch

    from pretrain.config import load_pretrain_config
    from pretrain.model import build_model

    cfg = load_pretrain_config(config)
    torch.manual_seed(0)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    size = cfg.data.image_size
    x1 = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    x2 = torch.randn_like(x1)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = model(x1, x2)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        model.update_target(0.99)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("pretrain/configs/fashion-mnist-byol-48px-9ep.yaml"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="repeats per precision, alternating; medians compared")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default=None, help="record name (default cpu_bf16-<config stem>-b<batch>-<threads>t)")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load_before = load_average()
    per: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for r in range(args.repeats):
        for name in ("fp32", "bf16"):
            t = step_seconds(args.config, args.batch, name == "bf16", args.steps, args.warmup)
            med = sorted(t)[len(t) // 2]
            per[name].append(med)
            print(f"repeat {r}  {name}  median {med:.4f} s/step  {1000 * med / args.batch:.3f} ms/image", flush=True)
    fp32, bf16 = side("float32", per["fp32"]), side("bfloat16 autocast", per["bf16"])
    ratio = fp32["median"] / bf16["median"]
    flags = cpu_flags()
    print(f"float32 / bf16 = {ratio:.2f}x per step (medians of {args.repeats}); CPU flags: {' '.join(flags)}")
    if args.no_record:
        return
    name = args.name or f"cpu_bf16-{args.config.stem}-b{args.batch}-{args.threads}t"
    record = perf_record(
        name,
        what=f"one BYOL step of {args.config.name} (batch {args.batch}), float32 vs bfloat16 autocast, CPU",
        metric="seconds per step",
        unit="s",
        higher_is_better=False,
        sides={"ours": bf16, "float32": fp32},
        ratio=ratio,
        ratio_definition="seconds per step, float32 / bf16, higher is better",
        goal="more BYOL steps inside issue #20's 30 CPU-minutes",
        threads=args.threads,
        device="cpu",
        load_before=load_before,
        details={"cpu_flags": flags, "batch": args.batch, "steps": args.steps, "warmup": args.warmup},
    )
    print(f"record: {write_perf_record(record, args.results_dir)}")


if __name__ == "__main__":
    main()
