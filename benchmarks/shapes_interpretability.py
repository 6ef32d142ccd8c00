"""``byol-bench interpret``: the interpretability report on ``shapes`` from a published suite's backbones.

    byol-bench interpret --suite-dir results/ablation-predictor-momentum --out results/analysis/shapes \\
        [--pretrain-run byol:0=RUN_DIR ...] [--det-records DIR ...]

1. **Backbones**: every ``(variant, seed)`` of the suite's records (``records/*.json``): its artifact, its kNN,
   linear, geometry and nuisance metrics, and detection AP where a detection record names the same artifact
   (``--det-records`` folders, default the suite's records; the newest record per artifact wins), so the
   correlation step picks up whatever detection records exist when it is re-run.
2. **Measures** (``downstream.analysis.interpret``) per backbone, cached as ``<out>/records/<variant>.s<seed>.json``
   with the artifact's sha256, the measure config and the code version; a cached record is reused while the
   artifact (when present) and the config match, so the report re-renders from committed records alone.
3. **Re-pretrained runs** (``--pretrain-run VARIANT:SEED=RUN_DIR``): BYOL runs that kept their checkpoint and
   heads. Their target network is exported (``pretrain.export.export_run(network="target")``) and both
   networks get the measures plus the suite's ``knn`` and ``linear`` evaluators; the online artifact is
   compared bit for bit (weights sha256) with the suite's artifact of the same variant and seed.
4. **Report** ``<out>/README.md`` + ``figures/`` + ``summary.json`` (``benchmarks.shapes_report``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.records import read_record

__all__ = [
    "Backbone",
    "CHECK_PATCHES",
    "collect_backbones",
    "attach_detection",
    "measure_backbones",
    "patch_checks",
    "main",
]

CHECK_PATCHES = (2, 8)  # occlusion patch sizes besides InterpretConfig.patch, as a robustness check


@dataclass
class Backbone:
    """One evaluated backbone of the suite: where its artifact is and what the suite measured on it."""

    variant: str
    seed: int
    artifact: str  # directory, or "raw-pixels"
    sha256: str
    metrics: dict[str, float] = field(default_factory=dict)  # "<evaluator>.<key>" from the suite's records
    det_source: str | None = None
    det_preset: str | None = None  # the detection record's config preset (the protocol)

    @property
    def name(self) -> str:
        """``<variant>.s<seed>``: the cache file's stem and the row's id."""
        return f"{self.variant}.s{self.seed}"


def _records(folder: Path) -> list[dict[str, Any]]:
    """The evaluator records in ``folder``; a torn, unreadable or tampered one is a ``RecordError`` naming it
    (skipping it would drop a backbone from the report with exit 0)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        rec = read_record(path).data
        if "evaluator" in rec and "metrics" in rec:
            rec["_path"] = str(path)
            out.append(rec)
    return out


def collect_backbones(
    suite_dir: str | Path, evaluators: tuple[str, ...] = ("knn", "linear", "geometry", "nuisance")
) -> list[Backbone]:
    """The suite's backbones from its classification records (``benchmark.variant`` / ``seed`` name them)."""
    suite_dir = Path(suite_dir)
    found: dict[tuple[str, int], Backbone] = {}
    for rec in _records(suite_dir / "records"):
        if rec["evaluator"] not in evaluators:
            continue
        bench = rec.get("benchmark") or {}
        key = (str(bench["variant"]), int(bench["seed"]))
        art = rec["artifact"]
        path = str(art.get("path"))
        bb = found.setdefault(key, Backbone(key[0], key[1], path, str(art.get("sha256"))))
        if bb.sha256 != str(art.get("sha256")):
            raise ValueError(f"{rec['_path']}: {key} names artifact {art.get('sha256')}, other records {bb.sha256}")
        for k, v in rec["metrics"].items():
            if isinstance(v, (int, float)):
                bb.metrics[f"{rec['evaluator']}.{k}"] = float(v)
    return sorted(found.values(), key=lambda b: (b.variant, b.seed))


def attach_detection(backbones: list[Backbone], folders: list[str | Path]) -> int:
    """Set ``det.AP`` on each backbone from the newest detection record naming its artifact (sha256); returns
    how many backbones got one."""
    by_sha: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for rec in _records(Path(folder)):
            if rec["evaluator"] != "detection" or "AP" not in rec["metrics"]:
                continue
            sha = str(rec["artifact"].get("sha256"))
            if sha not in by_sha or str(rec.get("created", "")) > str(by_sha[sha].get("created", "")):
                by_sha[sha] = rec
    n = 0
    for bb in backbones:
        rec = by_sha.get(bb.sha256)
        bb.metrics.pop("det.AP", None)
        bb.det_source = bb.det_preset = None
        if rec is not None:
            bb.metrics["det.AP"] = float(rec["metrics"]["AP"])
            bb.det_source = rec["_path"]
            bb.det_preset = str((rec.get("config") or {}).get("preset"))
            n += 1
    return n


def _cached(path: Path, sha: str, cfg: dict[str, Any], artifact_present: bool) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("config") != cfg:
        return None
    if artifact_present and rec.get("artifact", {}).get("sha256") != sha:
        return None
    return rec


def _measured(
    path: Path,
    name: str,
    artifact: str,
    sha: str,
    cfg_d: dict[str, Any],
    present: bool,
    measure: Any,
    log: Any,
    what: str,
) -> dict[str, Any]:
    """The record at ``path`` when it still holds for this artifact and config (``_cached``), else ``measure()``'s
    fields in a new record (name, artifact, config, code version, creation time, seconds), written atomically and
    logged as ``<name>: <what> in <seconds> s``."""
    from zoo.io import atomic_write_json, code_version

    rec = _cached(path, sha, cfg_d, present)
    if rec is not None:
        return rec
    if not present:
        raise FileNotFoundError(f"{name}: artifact {artifact} is missing and {path} has no record for it")
    start = time.perf_counter()
    body = measure()
    rec = {
        "name": name,
        "artifact": {"path": artifact, "sha256": sha},
        "config": cfg_d,
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.perf_counter() - start, 1),
        **body,
    }
    atomic_write_json(path, rec)
    log(f"{name}: {what} in {rec['seconds']} s")
    return rec


def measure_backbones(
    items: list[tuple[str, str, str]],
    out_dir: Path,
    cfg: Any,
    *,
    log: Any = print,
    dataset_options: Any = None,
    records_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Measures of each ``(name, artifact, sha256)``, computed or reused from ``out_dir/records/<name>.json``."""
    import torch

    from downstream.analysis.interpret import config_dict, interpret_backbone
    from downstream.artifacts import RAW_PIXELS, resolve_artifact

    cfg_d = config_dict(cfg)
    out: dict[str, dict[str, Any]] = {}
    for name, artifact, sha in items:
        path = (records_dir or out_dir / "records") / f"{name}.json"
        present = artifact == RAW_PIXELS or Path(artifact).is_dir()

        def measure(artifact: str = artifact) -> dict[str, Any]:
            torch.manual_seed(0)
            body = interpret_backbone(resolve_artifact(artifact), cfg, dataset_options=dataset_options).to_json()
            body["occlusion"] = body["occlusion"][:8] if body["occlusion"] else None  # pictures only
            return body

        out[name] = _measured(path, name, artifact, sha, cfg_d, present, measure, log, "measured")
    return out


def patch_checks(
    items: list[tuple[str, str, str]], out_dir: Path, cfg: Any, patches: tuple[int, ...], *, log: Any = print
) -> dict[str, dict[int, dict[str, float]]]:
    """Occlusion measures at other patch sizes (``interpret.occlusion_at_patch``), cached per backbone and patch
    as ``<out>/records/<name>.patch<P>.json`` like ``measure_backbones``."""
    from downstream.analysis.interpret import config_dict, occlusion_at_patch
    from downstream.artifacts import RAW_PIXELS, resolve_artifact

    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, artifact, sha in items:
        present = artifact == RAW_PIXELS or Path(artifact).is_dir()
        for patch in patches:
            cfg_d = {**config_dict(cfg), "patch": patch}
            path = out_dir / "records" / f"{name}.patch{patch}.json"
            rec = _measured(
                path, name, artifact, sha, cfg_d, present,
                lambda a=artifact, k=patch: {"metrics": occlusion_at_patch(resolve_artifact(a), cfg, k)},
                log, f"occlusion with {patch}-px patches",
            )  # fmt: skip
            out.setdefault(name, {})[patch] = rec["metrics"]
    return out


def half_checks(
    items: list[tuple[str, str, str]], out_dir: Path, cfg: Any, *, log: Any = print
) -> dict[str, dict[str, float]]:
    """``channels_half`` bisected below its power-of-two grid point (``interpret.channels_half_exact``), cached
    per backbone as ``<out>/records/<name>.half.json`` like ``measure_backbones``; raw pixels are skipped."""
    from downstream.analysis.interpret import channels_half_exact, config_dict
    from downstream.artifacts import RAW_PIXELS, resolve_artifact

    cfg_d = config_dict(cfg)
    out: dict[str, dict[str, float]] = {}
    for name, artifact, sha in items:
        if artifact == RAW_PIXELS:
            continue
        present = Path(artifact).is_dir()
        path = out_dir / "records" / f"{name}.half.json"
        rec = _measured(
            path, name, artifact, sha, cfg_d, present,
            lambda a=artifact: {"metrics": channels_half_exact(resolve_artifact(a), cfg)},
            log, "channels for half, bisected",
        )  # fmt: skip
        out[name] = rec["metrics"]
    return out


def _sha_of(artifact: str) -> str:
    from downstream.artifacts import RAW_PIXELS

    if artifact == RAW_PIXELS:
        return RAW_PIXELS
    return str(json.loads((Path(artifact) / "meta.json").read_text())["weights_sha256"])


def _pretrain_runs(specs: list[str], out_dir: Path, backbones: list[Backbone], cfg: Any, log: Any) -> dict[str, Any]:
    """Online and target networks of re-pretrained runs: measures, kNN / linear records, sha check."""
    from downstream.api import evaluate
    from zoo.io import atomic_write_json

    runs: dict[str, Any] = {}
    for spec in specs:
        key, sep, run_dir = spec.partition("=")
        variant, _, seed = key.partition(":")
        if not sep or not variant or not seed.isdigit():
            raise ValueError(f"--pretrain-run must be VARIANT:SEED=RUN_DIR, got '{spec}'")
        run = Path(run_dir)
        arts = {"online": run / "artifact", "target": run / "artifact-target"}
        if run.is_dir() and not arts["target"].is_dir():
            from pretrain.export import export_run

            export_run(run, arts["target"], network="target")
            log(f"{key}: exported the target network to {arts['target']}")
        published = next((b for b in backbones if b.variant == variant and b.seed == int(seed)), None)
        entry: dict[str, Any] = {"variant": variant, "seed": int(seed), "run_dir": str(run)}
        for net, art in arts.items():
            name = f"{variant}-{net}.s{seed}"
            rec_path = out_dir / "records" / f"{name}.eval.json"
            if art.is_dir():
                sha = _sha_of(str(art))
                measured = measure_backbones([(name, str(art), sha)], out_dir, cfg, log=log)[name]
                old = json.loads(rec_path.read_text()) if rec_path.is_file() else None
                if old is None or old.get("sha256") != sha:
                    evals = {}
                    for ev in ("knn", "linear"):
                        r = evaluate(str(art), ev, "shapes", seed=int(seed), device="cpu")
                        evals[ev] = {k: v for k, v in r["metrics"].items() if isinstance(v, (int, float))}
                    old = {"sha256": sha, "artifact": str(art), "metrics": evals}
                    atomic_write_json(rec_path, old)
                    log(f"{name}: knn / linear evaluated")
            else:
                if not rec_path.is_file():
                    raise FileNotFoundError(f"{name}: no artifact under {run} and no record {rec_path}")
                old = json.loads(rec_path.read_text())
                sha = old["sha256"]
                measured = measure_backbones([(name, str(art), sha)], out_dir, cfg, log=log)[name]
            entry[net] = {
                "sha256": sha,
                "eval": old["metrics"],
                "measures": measured["metrics"],
                "seconds": measured.get("seconds", 0.0),
            }
        if published is not None:
            entry["online_equals_published"] = entry["online"]["sha256"] == published.sha256
            entry["published"] = {k: published.metrics.get(k) for k in ("knn.top1_k20", "linear.top1")}
        runs[key] = entry
    return runs


def real_image_size(rec: dict[str, Any]) -> int | None:
    """The input size a kNN record evaluated at (``dataset.options.image_size``; None: the artifact's own)."""
    size = (rec.get("dataset") or {}).get("options", {}).get("image_size")
    return int(size) if size is not None else None


def _real_suite(suite_dir: str, out: Path, cfg: Any, log: Any) -> list[dict[str, Any]]:
    """The real-image sections' backbones (from the suite's kNN records) and their measures, one group per input
    size the suite evaluated at: each backbone is measured at its own kNN record's size (a 48-px backbone at 48,
    a 32-px one at 32), never at the first record's size for all. Measures are cached per size, under
    ``records/<dataset>/<size>px/``."""
    from dataclasses import replace

    from zoo.datasets import DatasetOptions

    knn = [r for r in _records(Path(suite_dir) / "records") if r["evaluator"] == "knn"]
    if not knn:
        raise ValueError(f"{suite_dir}: no kNN records")
    dataset = knn[0]["dataset"]["name"]
    size_of: dict[tuple[str, int], int | None] = {}
    for r in knn:
        bench = r.get("benchmark") or {}
        key = (str(bench["variant"]), int(bench["seed"]))
        size = real_image_size(r)
        if key in size_of and size_of[key] != size:
            raise ValueError(f"{r['_path']}: {key} has kNN records at {size_of[key]} and {size} px")
        size_of[key] = size
    rcfg = replace(cfg, dataset=dataset)
    backbones = collect_backbones(suite_dir, evaluators=("knn",))
    groups = []
    for size in sorted({size_of[(b.variant, b.seed)] for b in backbones}, key=lambda s: (s is None, s or 0)):
        members = [b for b in backbones if size_of[(b.variant, b.seed)] == size]
        measures = measure_backbones(
            [(b.name, b.artifact, b.sha256) for b in members],
            out,
            rcfg,
            log=log,
            dataset_options=DatasetOptions(image_size=size),
            records_dir=out / "records" / dataset / (f"{size}px" if size is not None else "native"),
        )
        groups.append(
            {
                "suite_dir": suite_dir,
                "dataset": dataset,
                "image_size": size,
                "cfg": rcfg,
                "backbones": members,
                "measures": measures,
            }
        )
    return groups


def main(argv: list[str]) -> int:
    """Measure every backbone of a shapes suite and write the interpretability report."""
    import torch

    from benchmarks.shapes_report import write_report
    from downstream.analysis.interpret import InterpretConfig

    p = argparse.ArgumentParser(prog="byol-bench interpret", description=main.__doc__)
    p.add_argument("--suite-dir", default="results/ablation-predictor-momentum")
    p.add_argument("--out", default="results/analysis/shapes")
    p.add_argument("--pretrain-run", action="append", default=[], help="VARIANT:SEED=RUN_DIR (kept checkpoint)")
    p.add_argument(
        "--det-records", action="append", default=None, help="folder of detection records (default: the suite's)"
    )
    p.add_argument(
        "--real-suite", default=None, help="a suite on real images (e.g. results/fashion-mnist): its kNN backbones too"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out = Path(args.out)
    cfg = InterpretConfig()

    def log(msg: str) -> None:
        print(f"[interpret {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        backbones = collect_backbones(args.suite_dir)
        n_det = attach_detection(backbones, args.det_records or [Path(args.suite_dir) / "records"])
        log(f"{len(backbones)} backbones, {n_det} with detection AP")
        measures = measure_backbones([(b.name, b.artifact, b.sha256) for b in backbones], out, cfg, log=log)
        runs = _pretrain_runs(args.pretrain_run, out, backbones, cfg, log)
        real = _real_suite(args.real_suite, out, cfg, log) if args.real_suite else None
        checks = patch_checks([(b.name, b.artifact, b.sha256) for b in backbones], out, cfg, CHECK_PATCHES, log=log)
        halves = half_checks([(b.name, b.artifact, b.sha256) for b in backbones], out, cfg, log=log)
        for name, half in halves.items():  # the grid value must be the cached one: same probe, same order
            if half["channels_half_grid"] != measures[name]["metrics"].get("channels_half"):
                log(f"{name}: bisection's grid k {half['channels_half_grid']} != cached channels_half")
            measures[name]["metrics"]["channels_half_exact"] = half["channels_half_exact"]
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"byol-bench interpret: error: {exc}", file=sys.stderr)
        return 2
    path = write_report(out, backbones, measures, runs, cfg, suite_dir=args.suite_dir, patch_checks=checks, real=real)
    log(f"report written to {path} ({time.perf_counter() - start:.0f} s)")
    return 0
