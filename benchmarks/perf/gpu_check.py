"""The GPU check: CUDA tests, GPU throughput against lightly, a short BYOL run with kNN, detection iterations.

    PYTHONPATH=. python benchmarks/perf/gpu_check.py                 # on a GPU machine, ≤ 8 min, → results/perf/gpu/
    PYTHONPATH=. python benchmarks/perf/gpu_check.py --device cpu --smoke --out /tmp/gpu-smoke   # CI: a minute or two

Runs from the repository root without the package being installed. Parts, each with its own time limit
and its own ``<out>/<part>.json``; ``<out>/summary.json`` lists every part's status (``ok``, ``failed: …``
or ``skipped: reason``) and wall time, so a missing optional package never hides the other parts:

1. ``environment``: torch / CUDA / cuDNN versions, GPU, bf16 support, which optional packages import.
2. ``tests``: pytest on the CUDA-relevant tests (``tests/gpu`` — CUDA against CPU references and a tiny
   AMP + channels_last run — and the pretraining tests, whose trainer runs pick the GPU with
   ``run.device=auto``); skipped without pytest.
3. ``throughput``: ``benchmarks/perf/pretrain_throughput.py`` per setting — ResNet-18 CIFAR stem
   (``resnet18-small``) and standard stem at 32 px, ResNet-50 at 224 px — our trainer with AMP (bf16 on
   CUDA), channels_last and the batched augmentation on the GPU, and lightly's reference loop (its
   example in fp32, PIL views in ``--workers`` DataLoader processes) where ``lightly`` imports; ``--wheels
   DIR`` installs every wheel of DIR (lightly and its pure-python dependencies, e.g. from ``pip download
   lightly``, without torch) into a temporary folder first. One perf record per setting.
4. ``byol``: a short BYOL run on ``shapes`` (the default dataset if ``shapes`` is not registered) with the
   in-run kNN per epoch, then the artifact through the ``knn`` evaluator on the device.
5. ``detection``: a few Faster R-CNN iterations (``benchmarks/perf/detection_speed.py``) if detectron2
   imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OPTIONAL = ("pytest", "lightly", "detectron2", "pycocotools", "kornia", "submitit", "timm")
# (name, arch, image size, batch, steps, warmup): the three settings; --smoke uses one tiny one
SETTINGS = [
    ("resnet18-small-32px", "resnet18-small", 32, 256, 20, 5),
    ("resnet18-32px", "resnet18", 32, 256, 20, 5),
    ("resnet50-224px", "resnet50", 224, 64, 10, 3),
]
SMOKE_SETTINGS = [("resnet18-32px", "resnet18", 32, 16, 2, 1)]
# the pretraining tests whose runs take the GPU (run.device=auto); not test_ddp: two ranks on one GPU
PRETRAIN_TESTS = [f"tests/pretrain/test_{m}.py" for m in ("byol_maths", "lars_knn", "augment", "train_e2e")]


class Skipped(Exception):
    """A part that cannot run here; the message is the reason."""


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env or _env(), cwd=REPO, timeout=max(timeout, 1), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------


def part_environment(args: argparse.Namespace, budget: float) -> dict[str, Any]:
    import torch

    from zoo.io import code_version, machine_info

    cuda = torch.cuda.is_available()
    return {
        "machine": machine_info(),
        "code_version": code_version(),
        "device": args.device,
        "cuda_available": cuda,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "optional_packages": {name: _importable(name) for name in OPTIONAL},
    }


def part_tests(args: argparse.Namespace, budget: float) -> dict[str, Any]:
    if not _importable("pytest"):
        raise Skipped("pytest is not installed")
    selection = ["tests/gpu"] if args.smoke else ["tests/gpu", *PRETRAIN_TESTS]
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *selection]
        proc = _run(cmd, budget)
        counts, failures = _junit(xml) if xml.exists() else ({}, [])
    if proc.returncode not in (0, 5) and not counts:  # 5: nothing collected
        raise RuntimeError(f"pytest exited {proc.returncode}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    result = {"selection": selection, "exit_code": proc.returncode, **counts, "failures": failures}
    result["output_tail"] = proc.stdout[-3000:]
    if proc.returncode not in (0, 5):
        raise _PartFailed(f"{len(failures)} tests failed: {', '.join(f['test'] for f in failures[:5])}", result)
    return result


class _PartFailed(Exception):
    """A part that ran and failed, with what it measured."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def _junit(path: Path) -> tuple[dict[str, int], list[dict[str, str]]]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures = []
    for s in suites:
        for key in counts:
            counts[key] += int(s.get(key, 0))
        for case in s.iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                test = f"{case.get('classname')}::{case.get('name')}"
                failures.append({"test": test, "message": (bad.get("message") or "")[:500]})
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts, failures


def _lightly_env(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, str] | None, str | None]:
    """An environment in which ``lightly`` imports, or ``None`` and the reason."""
    if _importable("lightly"):
        return _env(), None
    if args.wheels is None:
        return None, "lightly is not installed (pass --wheels DIR with its wheels to install it for this check)"
    target = tmp / "site"
    wheels = sorted(str(w) for w in Path(args.wheels).glob("*.whl"))
    if not wheels:
        return None, f"no wheels in {args.wheels}"
    # every wheel of the folder, no resolution (torch is already here): lightly and its pure-python needs
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(target), *wheels]
    proc = _run(cmd, 180)
    if proc.returncode != 0:
        return None, f"lightly could not be installed from {args.wheels}: {proc.stderr[-500:]}"
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(target)])
    return env, None


def part_throughput(args: argparse.Namespace, budget: float) -> dict[str, Any]:
    from benchmarks.perf_record import load_average, perf_record, side, write_perf_record

    script = REPO / "benchmarks" / "perf" / "pretrain_throughput.py"
    settings = SMOKE_SETTINGS if args.smoke else SETTINGS
    deadline = time.monotonic() + budget
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lightly_env, lightly_skip = _lightly_env(args, Path(tmp))
        for name, arch, size, batch, steps, warmup in settings:
            row: dict[str, Any] = {"arch": arch, "image_size": size, "batch": batch, "steps": steps}
            load_before = load_average()
            base = [sys.executable, str(script), "--arch", arch, "--image-size", str(size), "--batch", str(batch),
                    "--steps", str(steps), "--warmup", str(warmup), "--device", args.device]  # fmt: skip
            if args.threads:
                base += ["--threads", str(args.threads)]
            sides: dict[str, dict[str, Any]] = {}
            for which, env, extra in (("ours", _env(), []), ("lightly", lightly_env, ["--workers", str(args.workers)])):
                left = deadline - time.monotonic()
                if env is None:
                    row[which] = f"skipped: {lightly_skip}"
                    continue
                if left < 20:
                    row[which] = "skipped: time budget spent"
                    continue
                try:
                    proc = _run([*base, *extra, "--which", which], left, env)
                except RuntimeError as exc:  # a timeout: this side fails, the others still run
                    row[which] = f"failed: {exc}"
                    continue
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    row[which] = f"failed: exit {proc.returncode}: {proc.stderr[-800:]}"
                    continue
                res = json.loads(line[len("RESULT ") :])
                row[which] = res
                label = "pretrain.train (AMP, channels_last, GPU augmentation)" if which == "ours" else "lightly"
                sides[which] = side(label, [res["images_per_s"]], peak_memory_mb=res["peak_memory_mb"])
            if "ours" in sides:
                ratio = sides["ours"]["median"] / sides["lightly"]["median"] if "lightly" in sides else None
                record = perf_record(
                    f"pretrain_throughput-{args.device}-{name}",
                    what=f"BYOL training, {arch} {size} px, batch {batch} (GPU check)",
                    metric="images_per_s",
                    unit="images/s",
                    higher_is_better=True,
                    sides=sides,
                    ratio=ratio,
                    ratio_definition="ours / lightly" if ratio else None,
                    threads=args.threads,
                    device=args.device,
                    load_before=load_before,
                    details={"row": row, "lightly": lightly_skip or "ran", "command": " ".join(base)},
                )
                row["record"] = str(write_perf_record(record, args.out))
            out[name] = row
    if not any(isinstance(r.get("ours"), dict) for r in out.values()):
        raise _PartFailed("our trainer produced no throughput figure", out)
    return out


def part_byol(args: argparse.Namespace, budget: float) -> dict[str, Any]:
    import torch

    from downstream.api import evaluate
    from pretrain.config import load_pretrain_config
    from pretrain.train import read_metrics, train
    from zoo.datasets import list_datasets

    names = {d["name"] for d in list_datasets()}
    dataset = "shapes" if "shapes" in names else None
    overrides = [f"data.dataset={dataset}"] if dataset else []
    overrides += ["run.progress=false", "run.knn_every=1", f"run.device={args.device}"]
    if args.device != "cpu":
        overrides.append("run.channels_last=true")
    if args.threads:
        overrides.append(f"run.threads={args.threads}")
    if args.smoke:
        overrides += ["data.image_size=16", "data.limit=64", "data.knn_limit=32", "heads.projector_hidden=32",
                      "heads.projector_out=16", "heads.predictor_hidden=32", "optim.batch_size=16",
                      "optim.warmup_epochs=1", "run.epochs=1"]  # fmt: skip
    else:
        overrides += [f"run.epochs={args.byol_epochs}"]
    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "byol.yaml", overrides)
    run_dir = args.out / "byol-run"
    t0 = time.perf_counter()
    train(cfg, run_dir, resume=False)
    wall = time.perf_counter() - t0
    records = read_metrics(run_dir)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    steps = [r for r in records if r.get("kind") == "step"]
    eval_dataset = "digits" if args.smoke else cfg.data.dataset  # smoke: the smallest set, to stay quick
    rec = evaluate(run_dir / "artifact", "knn", eval_dataset, device=args.device, cache_dir=args.out / "cache")
    result = {
        "dataset": cfg.data.dataset,
        "fell_back_to_default": dataset is None,
        "arch": cfg.backbone.arch,
        "epochs": cfg.run.epochs,
        "wall_s": wall,
        "knn_val_top1_per_epoch": [r.get("knn_val_top1") for r in epochs],
        "train_s_per_epoch": [r.get("train_s", 0.0) for r in epochs],
        "images_per_s_median": sorted(r["images_per_s"] for r in steps)[len(steps) // 2] if steps else None,
        "final_loss": steps[-1]["loss"] if steps else None,
        "knn_evaluator_dataset": eval_dataset,
        "knn_evaluator_test": rec["metrics"],
        "max_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device != "cpu" else None,
    }
    return result


def part_detection(args: argparse.Namespace, budget: float) -> dict[str, Any]:
    if not _importable("detectron2"):
        raise Skipped("detectron2 is not installed")
    iters, warmup = ("1", "0") if args.smoke else ("20", "3")
    cmd = [sys.executable, str(REPO / "benchmarks" / "perf" / "detection_speed.py"), "--iters", iters,
           "--warmup", warmup, "--device", args.device]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = _env()
    env["BYOL_BENCH_PERF_RESULTS"] = str(args.out)  # honoured by perf scripts that write records
    proc = _run(cmd, budget, env)
    result = {"command": " ".join(cmd), "exit_code": proc.returncode, "output_tail": proc.stdout[-1500:]}
    if proc.returncode != 0:
        raise _PartFailed(f"detection_speed.py exited {proc.returncode}: {proc.stderr[-800:]}", result)
    return result


PARTS: dict[str, tuple[Callable[[argparse.Namespace, float], dict[str, Any]], float]] = {
    # name: (function, share of the time budget it may use)
    "environment": (part_environment, 0.02),
    "tests": (part_tests, 0.35),
    "throughput": (part_throughput, 0.30),
    "byol": (part_byol, 0.20),
    "detection": (part_detection, 0.13),
}


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI runs --device cpu --smoke)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf" / "gpu")
    parser.add_argument("--budget-s", type=float, default=480.0, help="total time budget (default 8 min)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in every part")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the lightly reference")
    parser.add_argument("--byol-epochs", type=int, default=5)
    parser.add_argument(
        "--wheels", type=Path, default=None, help="folder of wheels (lightly and its pure-python dependencies)"
    )
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda but torch sees no GPU here (use --device cpu --smoke to check the script)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from zoo.io import atomic_write_json, utc_now

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    summary: dict[str, Any] = {"started": utc_now(), "argv": sys.argv, "device": args.device, "smoke": args.smoke}
    statuses: dict[str, Any] = {}
    chosen = [n for n in PARTS if n in args.parts.split(",")]
    for i, name in enumerate(chosen):
        fn, share = PARTS[name]
        left = args.budget_s - (time.monotonic() - start)
        budget = left * share / sum(PARTS[n][1] for n in chosen[i:])  # time a part leaves goes to the rest
        t0 = time.perf_counter()
        result: dict[str, Any] = {}
        if left < 10:
            status = "skipped: time budget spent"
        else:
            try:
                result = fn(args, budget)
                status = "ok"
            except Skipped as exc:
                status = f"skipped: {exc}"
            except _PartFailed as exc:
                status, result = f"failed: {exc}", exc.result
            except Exception as exc:  # a part's failure is reported, and the other parts still run
                status = f"failed: {type(exc).__name__}: {exc}"
                result = {"traceback": traceback.format_exc()[-4000:]}
        wall = time.perf_counter() - t0
        statuses[name] = {"status": status, "wall_s": round(wall, 1)}
        atomic_write_json(args.out / f"{name}.json", {"part": name, "status": status, "wall_s": wall, **result})
        print(f"[gpu_check] {name:<12} {status[:200]} ({wall:.0f} s)", flush=True)
    summary.update(parts=statuses, wall_s=round(time.monotonic() - start, 1), finished=utc_now())
    atomic_write_json(args.out / "summary.json", summary)
    failed = [n for n, s in statuses.items() if s["status"].startswith("failed")]
    print(f"[gpu_check] {len(statuses)} parts in {summary['wall_s']:.0f} s; failed: {', '.join(failed) or 'none'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
