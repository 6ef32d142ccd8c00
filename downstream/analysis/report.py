"""Run the analysis for a set of variants and put everything on one Markdown page per suite.

``analyze`` evaluates each ``(variant, artifact)`` with the analysis evaluators (through
``downstream.api.evaluate``, so each gives an ordinary metric record) and draws the pictures;
``build_report`` adds the suite's leaderboard tables and plots (the files the benchmark runner wrote:
``leaderboard.md`` and ``plots/*.png``) and writes ``report.md`` with one-line captions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.io import atomic_write_json, atomic_write_text, default_cache_dir

__all__ = ["ANALYSIS_EVALUATORS", "AnalysisResult", "analyze", "build_report", "render_report", "fixed_indices"]

ANALYSIS_EVALUATORS = ("geometry", "layerwise", "invariance")


@dataclass
class AnalysisResult:
    """Metrics per variant and evaluator, and the figures written (name → path)."""

    dataset: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # variant → evaluator → key
    records: dict[str, dict[str, Path]] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)


def fixed_indices(labels: np.ndarray, n: int) -> np.ndarray:
    """The first image of each class in turn (class 0, 1, …, then the second of each), ``n`` of them:
    a fixed, class-diverse set of test images for pictures."""
    order: list[int] = []
    classes = np.unique(labels)
    per_class = {int(c): list(np.flatnonzero(labels == c)) for c in classes}
    depth = 0
    while len(order) < min(n, len(labels)):
        for c in classes:
            if depth < len(per_class[int(c)]) and len(order) < n:
                order.append(int(per_class[int(c)][depth]))
        depth += 1
    return np.asarray(order, dtype=np.int64)


def _context(
    artifact: str | Path, dataset: str, image_size: int | None, seed: int, device: str, cache_dir: Path, work_dir: Path
) -> Any:
    from downstream.artifacts import resolve_artifact
    from downstream.context import EvalContext
    from zoo.datasets import DatasetOptions

    dev = torch.device(device)
    opts = DatasetOptions(image_size=image_size)
    art = resolve_artifact(artifact, image_size=image_size, device=dev)
    art.model.eval()
    return EvalContext(art, dataset, opts, seed, dev, work_dir, cache_dir)


def analyze(
    artifacts: Mapping[str, str | Path],
    dataset: str,
    out_dir: str | Path,
    *,
    image_size: int | None = None,
    evaluators: Sequence[str] = ANALYSIS_EVALUATORS,
    overrides: Mapping[str, list[str]] | None = None,
    pictures: bool = True,
    layer: str = "pool",
    n_images: int = 8,
    n_queries: int = 4,
    k: int = 8,
    seed: int = 0,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    log: Any = print,
) -> AnalysisResult:
    """Metric records under ``out_dir/records/<variant>.<evaluator>.json`` and figures under ``out_dir/figures``.

    ``artifacts`` maps a variant name to an artifact directory (or ``raw-pixels``); ``overrides`` maps an
    evaluator name to its config overrides (``["linear=false"]``). A record already in ``out_dir`` for the
    same artifact weights, config, dataset and seed is reused (so a report can be rebuilt cheaply).
    """
    from downstream.analysis.embed import available_layers, embed_images, normalize, split_features, to_unit_tensor
    from downstream.analysis.figures import (
        embedding_figure,
        nearest,
        occlusion_figure,
        retrieval_figure,
        umap_available,
    )
    from downstream.analysis.occlusion import occlusion_map
    from downstream.api import evaluate

    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    result = AnalysisResult(dataset=dataset)
    overrides = dict(overrides or {})
    for variant, path in artifacts.items():
        result.metrics[variant], result.records[variant] = {}, {}
        for ev in evaluators:
            rec_path = out_dir / "records" / f"{variant}.{ev}.json"
            rec = _reusable(rec_path, path, ev, dataset, list(overrides.get(ev, [])), seed, image_size)
            if rec is not None:
                log(f"[analyze] {variant}: {ev} (record reused)")
                result.metrics[variant][ev] = rec["metrics"]
                result.records[variant][ev] = rec_path
                continue
            log(f"[analyze] {variant}: {ev}")
            rec = evaluate(
                path,
                ev,
                dataset,
                dataset_options=_opts(image_size),
                overrides=list(overrides.get(ev, [])),
                seed=seed,
                out=rec_path,
                device=device,
                cache_dir=cache,
            )
            result.metrics[variant][ev] = rec["metrics"]
            result.records[variant][ev] = rec_path
    if not pictures:
        return result

    fig_dir = out_dir / "figures"
    scratch = out_dir / ".work"
    panels, proj_panels, occ_rows, blocks = [], [], [], []
    test_images = test_labels = train_images = train_labels = None
    for variant, path in artifacts.items():
        log(f"[analyze] {variant}: pictures")
        ctx = _context(path, dataset, image_size, seed, device, cache, scratch)
        x_te, y_te = split_features(ctx, "test", layer)
        x_tr, y_tr = split_features(ctx, "train", layer)
        if test_images is None:
            test_images = ctx.load_split("test").arrays()[0]
            train_images = ctx.load_split("train").arrays()[0]
            test_labels, train_labels = y_te, y_tr
            pick = fixed_indices(test_labels, max(n_images, n_queries))
        panels.append((variant, x_te, y_te))
        if "projector" in available_layers(ctx.artifact, ()):
            p_te, _ = split_features(ctx, "test", "projector")
            proj_panels.append((variant, p_te, y_te))
        queries = pick[:n_queries]
        blocks.append((variant, nearest(x_te[torch.from_numpy(queries)], x_tr, k)))
        art = ctx.artifact

        def embed(x: torch.Tensor, art: Any = art) -> torch.Tensor:
            return embed_images(art, x, layer, device=device, normalized=True)

        x01 = to_unit_tensor(test_images[pick[:n_images]])
        maps = occlusion_map(
            embed,
            normalize(x01, art.meta.mean, art.meta.std),
            window=max(2, x01.shape[-1] // 4),
            stride=max(1, x01.shape[-1] // 8),
        )
        occ_rows.append((variant, maps))
    assert test_images is not None and train_images is not None
    result.figures["tsne"] = embedding_figure(panels, fig_dir / "tsne.png", method="tsne", seed=seed)
    if proj_panels:
        result.figures["tsne_projector"] = embedding_figure(
            proj_panels, fig_dir / "tsne_projector.png", method="tsne", seed=seed, title="projector outputs"
        )
    if umap_available():
        result.figures["umap"] = embedding_figure(panels, fig_dir / "umap.png", method="umap", seed=seed)
    result.figures["occlusion"] = occlusion_figure(occ_rows, test_images[pick[:n_images]], fig_dir / "occlusion.png")
    result.figures["retrieval"] = retrieval_figure(
        blocks,
        test_images[pick[:n_queries]],
        test_labels[pick[:n_queries]],
        train_images,
        train_labels,
        fig_dir / "retrieval.png",
    )
    atomic_write_json(
        out_dir / "analysis.json",
        {"dataset": dataset, "metrics": result.metrics, "figures": {k: str(v) for k, v in result.figures.items()}},
    )
    return result


def _reusable(
    rec_path: Path,
    artifact: str | Path,
    evaluator: str,
    dataset: str,
    overrides: list[str],
    seed: int,
    image_size: int | None,
) -> dict[str, Any] | None:
    """The record at ``rec_path`` when it was made from the same artifact weights (and heads), evaluator
    config, dataset, image size and seed — else ``None`` (it is recomputed)."""
    from downstream.registry import get_evaluator
    from zoo.artifact import read_meta
    from zoo.config import load_config, to_dict
    from zoo.records import read_record

    if not rec_path.is_file() or str(artifact) == "raw-pixels":
        return None
    try:
        rec = read_record(rec_path).data  # a record failing its checksum is recomputed like any unreadable one
        meta = read_meta(artifact)
        cfg = to_dict(load_config(get_evaluator(evaluator).config, None, overrides))
    except Exception:  # noqa: BLE001 - anything unreadable is simply recomputed
        return None
    same = (
        rec.get("artifact", {}).get("sha256") == meta.weights_sha256
        and rec["artifact"].get("meta", {}).get("extra", {}).get("heads_sha256") == meta.extra.get("heads_sha256")
        and rec.get("config") == cfg
        and rec.get("seed") == seed
        and rec.get("dataset", {}).get("name") == dataset
        and (image_size is None or rec["dataset"].get("options", {}).get("image_size") == image_size)
    )
    return rec if same else None


def _opts(image_size: int | None) -> Any:
    from zoo.datasets import DatasetOptions

    return DatasetOptions(image_size=image_size)


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------

_GEOMETRY_COLS = [
    ("effective_rank", "eff. rank ↑"),
    ("std_normalized_sqrt_d", "std·√D ↑"),
    ("std_normalized", "std"),
    ("alignment", "align ↓"),
    ("uniformity", "unif ↓"),
]
_CAPTIONS = {
    "tsne": "t-SNE of the test features (pooled backbone output), coloured by class, same layout seed per panel: "
    "classes in separate clusters = semantic features; one blob or a curve = collapse.",
    "tsne_projector": "t-SNE of the projector outputs (where BYOL's loss acts) of the variants that carry a "
    "projector, same seed: collapse shows here first.",
    "umap": "UMAP of the same features, same seed per panel.",
    "occlusion": "Occlusion sensitivity: how much the embedding's cosine similarity to the unoccluded one drops "
    "when a grey patch covers each place (one colour scale for all rows): a dark row means nothing in the image "
    "moves the embedding.",
    "retrieval": "Nearest-neighbour retrieval: for fixed test queries, the top train images by cosine similarity "
    "per variant (green frame: same class).",
}


def _fmt(v: float | None, precision: int = 3) -> str:
    return "–" if v is None else f"{v:.{precision}g}" if abs(v) >= 100 else f"{v:.{precision}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _geometry_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    layers = []
    for m in metrics.values():
        for key in m.get("geometry", {}):
            if key.startswith("effective_rank"):
                suffix = key[len("effective_rank") :]
                if suffix not in layers:
                    layers.append(suffix)
    headers = ["variant", "layer", *[h for _, h in _GEOMETRY_COLS]]
    rows = []
    for variant, m in metrics.items():
        g = m.get("geometry", {})
        for s in layers:
            if f"effective_rank{s}" in g:
                dim = g.get(f"dim{s}")
                layer = (s[1:] or "pool") + (f" ({int(dim)}-d)" if dim else "")
                rows.append([variant, layer, *[_fmt(g.get(f"{k}{s}")) for k, _ in _GEOMETRY_COLS]])
    return _table(headers, rows)


def _layer_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]], prefix: str) -> str:
    layers: list[str] = []
    for m in metrics.values():
        for key in m.get("layerwise", {}):
            if key.startswith(prefix):
                name = key[len(prefix) :]
                if name not in layers:
                    layers.append(name)
    rows = [[v, *[_fmt(m.get("layerwise", {}).get(prefix + name)) for name in layers]] for v, m in metrics.items()]
    return _table(["variant", *layers], rows)


def _invariance_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    fams: list[str] = []
    for m in metrics.values():
        for key in m.get("invariance", {}):
            if key.startswith("cos_") and key.count("_") == 1 and key[4:] not in fams:
                fams.append(key[4:])
    rows = [[v, *[_fmt(m.get("invariance", {}).get(f"cos_{f}")) for f in fams]] for v, m in metrics.items()]
    return _table(["variant", *[f"cos {f}" for f in fams]], rows)


def render_report(
    suite_name: str,
    result: AnalysisResult,
    out_dir: str | Path,
    *,
    leaderboard_md: str | None = None,
    plots: Sequence[Path] = (),
    note: str = "",
) -> str:
    """The Markdown page (image links relative to ``out_dir``)."""
    out_dir = Path(out_dir)

    def rel(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), out_dir.resolve()).replace(os.sep, "/")

    parts = [f"# {suite_name}: representation report", ""]
    if note:
        parts += [note, ""]
    parts += [
        f"Dataset `{result.dataset}`; variants: {', '.join(f'`{v}`' for v in result.metrics)}. "
        "Numbers come from the metric records under `records/`; pictures are under `figures/`.",
        "",
    ]
    if leaderboard_md:
        parts += ["## Leaderboard", "", _demote(leaderboard_md.strip()), ""]
    for p in plots:
        parts += [
            f"![{Path(p).stem}]({rel(p)})",
            "",
            f"*{Path(p).stem.replace('_', ' ')}: from the suite's leaderboard plots.*",
            "",
        ]
    m = result.metrics
    if any("geometry" in v for v in m.values()):
        parts += [
            "## Collapse and geometry",
            "",
            "Effective rank of the feature covariance (Roy & Vetterli 2007; 1 = everything on one line, "
            "0 = one point), std of l2-normalised features × √D (SimSiam's collapse signal, ≈ 1 isotropic, "
            "0 collapsed), alignment and uniformity of two augmented views (Wang & Isola 2020; uniformity 0 = "
            "one point). Test split.",
            "",
            _geometry_table(m),
            "",
        ]
    if any("layerwise" in v for v in m.values()):
        parts += [
            "## Where the semantics live: probes per layer",
            "",
            "kNN top-1 (k = 20, T = 0.07, train bank → test):",
            "",
        ]
        parts += [_layer_table(m, "knn_top1_"), ""]
        if any(k.startswith("linear_top1_") for v in m.values() for k in v.get("layerwise", {})):
            parts += [
                "Linear probe top-1 (L2 strength chosen on val, test reported once):",
                "",
                _layer_table(m, "linear_top1_"),
                "",
            ]
    if any("invariance" in v for v in m.values()):
        parts += [
            "## Augmentation invariance",
            "",
            "Mean cosine similarity between an image's embedding and that of one transform applied alone; "
            "`cos other` is two different images (the chance level: invariance means well above it, collapse "
            "means everything ≈ 1).",
            "",
            _invariance_table(m),
            "",
        ]
    if result.figures:
        parts += ["## Pictures", ""]
        for name, p in result.figures.items():
            parts += [f"![{name}]({rel(p)})", "", f"*{_CAPTIONS.get(name, name)}*", ""]
    return "\n".join(parts).rstrip() + "\n"


def _demote(md: str) -> str:
    """Headings of an embedded page one level down (its ``#`` title becomes ``###``)."""
    return "\n".join("##" + line if line.startswith("#") else line for line in md.splitlines())


def build_report(
    suite_name: str,
    results_dir: str | Path | None,
    artifacts: Mapping[str, str | Path],
    out_dir: str | Path,
    *,
    dataset: str = "digits-m",
    image_size: int | None = None,
    leaderboard_dir: str | Path | None = None,
    overrides: Mapping[str, list[str]] | None = None,
    seed: int = 0,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    note: str = "",
    log: Any = print,
) -> Path:
    """Analyse ``artifacts`` (variant → artifact dir) on ``dataset`` and write ``out_dir/report.md``.

    The page embeds the suite's leaderboard (``leaderboard.md`` and ``plots/*.png`` from ``leaderboard_dir``,
    default ``results_dir``, when they exist), the geometry / layer-wise / invariance tables and the
    t-SNE (UMAP), occlusion and retrieval pictures. Returns the path of ``report.md``.
    """
    out_dir = Path(out_dir)
    result = analyze(
        artifacts,
        dataset,
        out_dir,
        image_size=image_size,
        overrides=overrides,
        seed=seed,
        device=device,
        cache_dir=cache_dir,
        log=log,
    )
    lb_dir = Path(leaderboard_dir) if leaderboard_dir is not None else (Path(results_dir) if results_dir else None)
    leaderboard_md, plots = None, []
    if lb_dir is not None:
        if (lb_dir / "leaderboard.md").is_file():
            leaderboard_md = (lb_dir / "leaderboard.md").read_text()
        plots = sorted((lb_dir / "plots").glob("*.png")) if (lb_dir / "plots").is_dir() else []
    text = render_report(suite_name, result, out_dir, leaderboard_md=leaderboard_md, plots=plots, note=note)
    return atomic_write_text(out_dir / "report.md", text)


def load_metrics(out_dir: str | Path) -> dict[str, Any]:
    """The ``analysis.json`` summary written by ``analyze``."""
    return json.loads((Path(out_dir) / "analysis.json").read_text())
