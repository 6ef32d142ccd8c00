"""The shapes interpretability report: tables (mean ± std over seeds), figures and a short reading per question.

``write_report(out_dir, backbones, measures, runs, cfg)`` is called by ``byol-bench interpret``
(``benchmarks.shapes_interpretability``) once every backbone is measured; it computes nothing expensive
(t-SNE layouts and occlusion maps come from the cached records), so re-rendering takes seconds. Sentences
that state a direction ("more than", "below") are chosen from the numbers, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VARIANT_ORDER", "mean_std", "fmt_ms", "write_report"]

VARIANT_ORDER = (
    "byol",
    "predictor-lr-x1",
    "tau-0",
    "tau-0-predictor-lr-x1",
    "tau-0.99",
    "tau-0.999",
    "tau-1",
    "no-predictor",
    "random-init",
    "supervised",
    "raw-pixels",
)
BASELINES = ("random-init", "supervised", "raw-pixels")
PICTURED = ("byol", "no-predictor", "tau-1", "random-init", "supervised", "raw-pixels")
_FACTOR_LABEL = {
    "fg_luma": "shape luma",
    "bg_luma": "background luma",
    "cx": "centre x",
    "cy": "centre y",
    "radius": "radius",
    "area": "area",
    "noise": "noise σ",
}


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof 1; NaN for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def fmt_ms(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` (just the mean for one seed, ``–`` for none)."""
    m, s, n = mean_std([x * scale for x in values if x is not None])
    if n == 0:
        return "–"
    return f"{m:.{digits}f}" if n == 1 or not math.isfinite(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def fmt_seeds(values: Sequence[float]) -> str:
    """Per-seed integer values joined by ``/`` (``–`` for none): for counts on a grid, where a mean over
    seeds would be a count no seed had."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return "/".join(f"{x:.0f}" for x in v) if v else "–"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


class _Data:
    """Per-variant lists of a measure over seeds, from the suite's metrics and the cached measures."""

    def __init__(self, backbones: list[Any], measures: dict[str, dict[str, Any]]) -> None:
        self.backbones = backbones
        self.measures = measures
        present = {b.variant for b in backbones}
        self.variants = [v for v in VARIANT_ORDER if v in present] + sorted(present - set(VARIANT_ORDER))

    def value(self, b: Any, key: str) -> float:
        """``suite:<evaluator>.<key>`` from the suite's records, else a cached measure."""
        if key.startswith("suite:"):
            return float(b.metrics.get(key[len("suite:") :], math.nan))
        v = self.measures[b.name]["metrics"].get(key)
        return math.nan if v is None else float(v)

    def values(self, variant: str, key: str) -> list[float]:
        """The measure over the variant's seeds."""
        return [self.value(b, key) for b in self.backbones if b.variant == variant]

    def ms(self, variant: str, key: str, digits: int = 3, scale: float = 1.0) -> str:
        """``mean ± std`` over the variant's seeds."""
        return fmt_ms(self.values(variant, key), digits, scale)

    def seeds(self, variant: str, key: str) -> str:
        """The variant's per-seed values as ``a/b/c`` (for grid counts such as ``channels_half``)."""
        return fmt_seeds(self.values(variant, key))

    def mean(self, variant: str, key: str) -> float:
        """Mean over the variant's seeds."""
        return mean_std(self.values(variant, key))[0]

    def per_backbone(self, key: str) -> dict[str, float]:
        """``{backbone name: value}`` for the Spearman step."""
        return {b.name: self.value(b, key) for b in self.backbones}


def _compare(d: _Data, a: str, b: str, key: str, digits: int = 3) -> tuple[str, float]:
    """'``a`` X ± s vs ``b`` Y ± s' and the difference in units of the larger seed std (NaN without stds)."""
    ma, sa, _ = mean_std(d.values(a, key))
    mb, sb, _ = mean_std(d.values(b, key))
    spread = max(x for x in (sa, sb, 0.0) if math.isfinite(x))
    z = (ma - mb) / spread if spread > 0 else math.nan
    return f"{a} {d.ms(a, key, digits)} vs {b} {d.ms(b, key, digits)}", z


def _direction(z: float, more: str, less: str, same: str) -> str:
    if not math.isfinite(z):
        return same
    return more if z >= 2 else less if z <= -2 else same


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from zoo.io import atomic_write_with

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight"))
    _plt().close(fig)
    return path


def _seed0(d: _Data, variant: str) -> Any | None:
    return next((b for b in d.backbones if b.variant == variant and b.seed == 0), None)


def _occlusion_figure(
    d: _Data, path: Path, cfg: Any, image_size: int | None = None, pictured: tuple[str, ...] = PICTURED
) -> Path | None:
    from downstream.analysis.embed import to_unit_tensor
    from downstream.analysis.interpret import SHAPES_SETS, object_masks, shape_masks
    from zoo.datasets import DatasetOptions, load_dataset, shape_factors

    rows = [(v, _seed0(d, v)) for v in pictured if _seed0(d, v) is not None]
    if not rows:
        return None
    opts = DatasetOptions(image_size=image_size)
    images, labels = load_dataset(cfg.dataset, "test", opts).arrays()
    n = 6
    if cfg.dataset in SHAPES_SETS:
        fac = {k: v[:n] for k, v in shape_factors("test", opts, name=cfg.dataset).items()}
        masks = shape_masks(labels[:n], fac, images.shape[1]).numpy()
    else:
        masks = object_masks(to_unit_tensor(images[:n])).numpy()
    plt = _plt()
    fig, axes = plt.subplots(n, len(rows) + 1, figsize=(1.6 * (len(rows) + 1), 1.6 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 0].contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
        for j, (v, b) in enumerate(rows, start=1):
            occ = np.asarray(d.measures[b.name]["occlusion"][i])
            big = np.kron(occ, np.ones((cfg.patch, cfg.patch)))
            axes[i, j].imshow(big, cmap="magma", vmin=0)
            axes[i, j].contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.6)
            if i == 0:
                axes[i, j].set_title(v, fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"occlusion sensitivity (1 − cos, {cfg.patch}-px patches, each map its own scale; seed 0), mask outlined",
        fontsize=9,
    )
    return _save(fig, path)


def _class_tsne_figure(d: _Data, path: Path, title: str, pictured: tuple[str, ...] = PICTURED) -> Path | None:
    rows = [(v, _seed0(d, v)) for v in pictured if _seed0(d, v) is not None]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(rows), figsize=(2.2 * len(rows), 2.4), squeeze=False)
    for ax, (v, b) in zip(axes[0], rows, strict=True):
        xy = np.asarray(d.measures[b.name]["tsne_xy"])
        m = d.measures[b.name]["metrics"]
        ax.scatter(xy[:, 0], xy[:, 1], c=d.labels[: len(xy)], cmap="tab10", s=3, linewidths=0)
        ax.set_title(f"{v}\ntrust {m['tsne_trustworthiness']:.3f}, 5-NN {m['tsne_knn_2d']:.2f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _tsne_figure(d: _Data, path: Path, cfg: Any) -> Path | None:
    from downstream.analysis.interpret import scalar_factors
    from zoo.datasets import DatasetOptions, load_dataset, shape_factors

    rows = [(v, _seed0(d, v)) for v in PICTURED if _seed0(d, v) is not None]
    if not rows:
        return None
    n = cfg.tsne_images
    _, labels = load_dataset(cfg.dataset, "test", DatasetOptions()).arrays()
    fac = scalar_factors({k: v[:n] for k, v in shape_factors("test", DatasetOptions(), name=cfg.dataset).items()})
    colourings = [("class", labels[:n], "tab10")] + [
        (_FACTOR_LABEL[k], fac[k], "viridis") for k in ("fg_luma", "bg_luma", "cx", "cy", "radius")
    ]
    plt = _plt()
    fig, axes = plt.subplots(len(rows), len(colourings), figsize=(2.0 * len(colourings), 2.1 * len(rows)))
    axes = np.atleast_2d(axes)
    for i, (v, b) in enumerate(rows):
        xy = np.asarray(d.measures[b.name]["tsne_xy"])
        m = d.measures[b.name]["metrics"]
        for j, (label, colour, cmap) in enumerate(colourings):
            ax = axes[i, j]
            ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap=cmap, s=3, linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"colour: {label}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{v}\ntrust {m['tsne_trustworthiness']:.3f}\nkNN-2D {m['tsne_knn_2d']:.2f}", fontsize=7)
    fig.suptitle(f"t-SNE of pooled test features (first {n} test images, seed 0)", fontsize=9, y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, path)


def _channel_figure(d: _Data, path: Path, cfg: Any) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    drawn = False
    for v in d.variants:
        curves = [d.measures[b.name]["curve"] for b in d.backbones if b.variant == v and d.measures[b.name]["curve"]]
        if not curves:
            continue
        dim = int(d.mean(v, "dim"))
        ks = [k for k in cfg.refit_ks if k < dim] + [dim]
        ax.plot(ks, np.mean(curves, 0), marker="o", ms=3, label=v, ls="--" if v in BASELINES else "-")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("channels kept (most important first; probe refitted)")
    ax.set_ylabel("test top-1 (log scale)")
    ax.axhline(0.1, color="grey", lw=0.6, ls=":")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("how concentrated is the shape information? (mean of seeds)", fontsize=9)
    return _save(fig, path)


def _scatter_figure(
    d: _Data, path: Path, measures: list[tuple[str, str]], targets: list[tuple[str, str]]
) -> Path | None:
    plt = _plt()
    fig, axes = plt.subplots(len(targets), len(measures), figsize=(2.2 * len(measures), 2.2 * len(targets)))
    axes = np.atleast_2d(axes)
    cmap = plt.get_cmap("tab20")
    colour = {v: cmap(i % 20) for i, v in enumerate(d.variants)}
    for i, (tkey, tlabel) in enumerate(targets):
        for j, (mkey, mlabel) in enumerate(measures):
            ax = axes[i, j]
            for b in d.backbones:
                x, y = d.value(b, mkey), d.value(b, tkey)
                if math.isfinite(x) and math.isfinite(y):
                    ax.scatter(x, y, color=colour[b.variant], s=12)
            ax.tick_params(labelsize=6)
            if i == len(targets) - 1:
                ax.set_xlabel(mlabel, fontsize=7)
            if j == 0:
                ax.set_ylabel(tlabel, fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour[v], label=v) for v in d.variants]
    fig.legend(handles=handles, loc="center right", fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------

_TRANSFER_MEASURES = [
    ("occ_in_mask", "occlusion in-mask share"),
    ("occ_in_mask_ratio", "in-mask share / chance (per-image mean)"),
    ("pointing", "pointing game"),
    ("channels_half", "channels for half accuracy"),
    ("top1_channel_drop", "top channel's ablation drop"),
    ("top_eta_shape", "top-10 channels' η with shape"),
    ("tsne_trustworthiness", "t-SNE trustworthiness"),
    ("suite:geometry.effective_rank", "effective rank (pool)"),
    ("suite:geometry.std_normalized_sqrt_d", "std·√D (pool)"),
    ("suite:nuisance.bg_rgb_r2", "background colour R²"),
    ("suite:nuisance.fg_rgb_r2", "shape colour R²"),
    ("suite:nuisance.cx_r2", "position x R²"),
    ("knn_layer3", "kNN of layer3 (a class probe)"),
    ("tsne_knn_2d", "kNN in the t-SNE map (a class probe)"),
]
_TARGETS = [
    ("suite:knn.top1_k20", "kNN top-1"),
    ("suite:linear.top1", "linear top-1"),
    ("suite:det.AP", "detection AP"),
]


def _spearman_rows(
    d: _Data, subset: Callable[[Any], bool], half: str = "channels_half"
) -> tuple[list[list[str]], dict[str, Any]]:
    from downstream.analysis.transfer import spearman_table

    bbs = [b for b in d.backbones if subset(b)]
    # the "channels_half" row reads ``half`` (the bisected count where there is one)
    measures = {
        k: {b.name: d.value(b, half if k == "channels_half" else k) for b in bbs} for k, _ in _TRANSFER_MEASURES
    }
    targets = {k: {b.name: d.value(b, k) for b in bbs} for k, _ in _TARGETS}
    table = spearman_table(measures, targets)
    rows = []
    for key, label in _TRANSFER_MEASURES:
        cells = [label]
        for t, _ in _TARGETS:
            s = table[key][t]
            if math.isfinite(s["rho"]):
                star = " **" if s["p"] < 0.01 else " *" if s["p"] < 0.05 else ""
                cells.append(f"{s['rho']:+.2f} (n {int(s['n'])}, p {s['p']:.2g}){star}")
            else:
                cells.append(f"– (n {int(s['n'])})")
        rows.append(cells)
    return rows, table


def _strong(table: dict[str, Any], target: str) -> list[str]:
    """The measures (class probes left out) with |ρ| ≥ 0.5 and p < 0.01 against ``target``: p is
    ``transfer.spearman``'s, exact for small n, so 4 perfectly ordered backbones (p 0.083) are not among them."""
    return [
        f"{label} ({table[key][target]['rho']:+.2f})"
        for key, label in _TRANSFER_MEASURES
        if "class probe" not in label
        and math.isfinite(table[key][target]["rho"])
        and table[key][target]["p"] < 0.01
        and abs(table[key][target]["rho"]) >= 0.5
    ]


# BYOL variants whose seeds collapsed (no predictor) or whose target stayed (near) its initialisation: the
# occlusion-vs-kNN ρ is also given without them
NOT_LEARNED = ("no-predictor", "tau-1", "tau-0.999")


def _occlusion_vs_knn(d: _Data) -> dict[str, Any]:
    """Spearman ρ of occlusion in-mask share and pointing game with kNN within BYOL, three ways: every seed
    of every variant, the seeds of the variants not in ``NOT_LEARNED``, and one point per variant (its mean
    over seeds; the seeds of one variant are not independent points)."""
    from downstream.analysis.transfer import spearman

    byol = [b for b in d.backbones if b.variant not in BASELINES]
    learned = [b for b in byol if b.variant not in NOT_LEARNED]
    variants = sorted({b.variant for b in byol})
    knn = "suite:knn.top1_k20"
    out: dict[str, Any] = {}
    for key in ("occ_in_mask", "pointing"):
        out[key] = {
            "all": spearman({b.name: d.value(b, key) for b in byol}, {b.name: d.value(b, knn) for b in byol}),
            "learned": spearman({b.name: d.value(b, key) for b in learned}, {b.name: d.value(b, knn) for b in learned}),
            "variant_means": spearman({v: d.mean(v, key) for v in variants}, {v: d.mean(v, knn) for v in variants}),
            "learned_variant_means": spearman(
                {v: d.mean(v, key) for v in variants if v not in NOT_LEARNED},
                {v: d.mean(v, knn) for v in variants if v not in NOT_LEARNED},
            ),
        }
    return out


def _knn_place(d: _Data, v: str) -> str:
    """Where variant ``v``'s kNN lies against random-init and byol, by the page's rule (a difference of at
    least two of the larger seed std, n = 3 seeds each)."""
    key = "suite:knn.top1_k20"
    _, z_ri = _compare(d, v, "random-init", key)
    _, z_by = _compare(d, v, "byol", key)
    ms = d.ms(v, key)
    if _direction(z_ri, "up", "down", "same") == "same":
        return f"`{v}` ≈ random-init (kNN {ms})"
    if z_ri <= -2:
        return f"`{v}` below random-init (kNN {ms})"
    if z_by <= -2:
        return f"`{v}` between random-init and byol (kNN {ms}: {z_ri:.1f} seed stds above random-init)"
    return f"`{v}` as high as byol (kNN {ms})"


def _rho_text(s: dict[str, float]) -> str:
    if not math.isfinite(s["rho"]):
        return f"– (n {int(s['n'])})"
    return f"ρ {s['rho']:+.2f} (n {int(s['n'])}, p {s['p']:.2g})"


def _add_map_r2(measures: dict[str, dict[str, Any]], cfg: Any) -> None:
    """``tsne_r2_<factor>`` (``maps.loo_knn_r2`` in each cached t-SNE layout), derived at render time."""
    from downstream.analysis.interpret import scalar_factors
    from downstream.analysis.maps import loo_knn_r2
    from zoo.datasets import DatasetOptions, shape_factors

    fac = scalar_factors(shape_factors("test", DatasetOptions(), name=cfg.dataset))
    for rec in measures.values():
        xy = rec.get("tsne_xy")
        if xy is None:
            continue
        xy = np.asarray(xy)
        for name, values in fac.items():
            rec["metrics"][f"tsne_r2_{name}"] = loo_knn_r2(xy, values[: len(xy)])


def _real_section(add: Callable[[str], None], real: dict[str, Any], out: Path) -> None:
    """The real-image section: the same measures without known factors (object = the non-black pixels)."""
    from downstream.analysis.interpret import OBJECT_THRESHOLD
    from zoo.datasets import DatasetOptions, load_dataset

    cfg, name, size = real["cfg"], real["dataset"], real["image_size"]
    d = _Data(real["backbones"], real["measures"])
    d.labels = load_dataset(name, "test", DatasetOptions(image_size=size)).arrays()[1]
    tag = f"{name}-{size}px" if size is not None else name
    pictured = tuple(d.variants)
    occ = _occlusion_figure(d, out / "figures" / f"{tag}-occlusion.png", cfg, size, pictured)
    title = f"t-SNE of {name} test features at {size} px (seed 0)"
    tsne = _class_tsne_figure(d, out / "figures" / f"{tag}-tsne.png", title, pictured)
    add(f"## Real images: {name}, {size} px\n")
    add(
        f"The same measures on the backbones of [`{real['suite_dir']}`](../../../{real['suite_dir']}/README.md)"
        f" ({real['image_size']} px). No factors are known here, so the object mask is the non-black pixels (mean"
        f" value > {OBJECT_THRESHOLD}; the items lie on a black background) and η is taken with the class.\n"
    )
    rows = []
    for v in d.variants:
        rows.append(
            [f"`{v}`", str(len(d.values(v, "occ_in_mask"))), d.ms(v, "suite:knn.top1_k20")]
            + [
                d.ms(v, "occ_in_mask"),
                d.ms(v, "occ_chance"),
                f"{d.ms(v, 'pointing', 2)} ({d.mean(v, 'pointing_chance'):.2f})",
            ]
            + [d.ms(v, "tsne_trustworthiness"), d.ms(v, "tsne_knn_2d")]
            + [d.ms(v, f"knn_{layer}") for layer in cfg.layers]
            + [d.seeds(v, "channels_half")]
        )
    add(
        _table(
            [
                "variant",
                "seeds",
                "kNN top-1 (suite)",
                "in-object share",
                "chance (object area)",
                "pointing (chance)",
                "t-SNE trust.",
                "5-NN in the map",
            ]
            + [f"kNN {layer}" for layer in cfg.layers]
            + ["channels for half (per seed, power-of-two grid)"],
            rows,
        )
    )
    # this group's BYOL, random-init and supervised rows (at 48 px: byol-48px-9ep, random-init-48px, ...)
    byols = [v for v in d.variants if v.startswith("byol")]
    rand = next((v for v in d.variants if v.startswith("random-init")), None)
    sup = next((v for v in d.variants if v.startswith("supervised")), None)
    if byols and rand is not None:
        byol = byols[-1]
        cmp_occ, z = _compare(d, byol, rand, "occ_in_mask")
        chance = d.mean(byol, "occ_chance")
        below = [v for v in d.variants if d.mean(v, "occ_in_mask") < chance]
        caveat = (
            f" {'Every backbone' if len(below) == len(d.variants) else ', '.join(below)} puts less of its"
            f" sensitivity on the object than the object's share of the image ({chance:.3f}): a patch of the"
            " normalisation mean (grey) on the black background is itself a new bright square, so occluding"
            " background moves the features as much as occluding the item. Here the occlusion numbers measure the"
            " occluder as much as the backbone (a grey square on `shapes`' coloured backgrounds is a smaller change,"
            " but the same caveat applies there in part)."
            if below
            else ""
        )
        add(
            f"\n**Reading.** In-object share: {cmp_occ}:"
            f" {_direction(z, 'BYOL looks at the object more', 'BYOL looks at it less', 'no clear difference')}."
            + caveat
            + " The t-SNE map separates the classes (5-NN) for "
            + ", ".join(f"`{v}` {d.ms(v, 'tsne_knn_2d')}" for v in [*byols, rand] + ([sup] if sup else []))
            + "; BYOL's best stage: "
            + ", ".join(f"`{v}` {max(cfg.layers, key=lambda layer: d.mean(v, f'knn_{layer}'))}" for v in byols)
            + ".\n"
        )
    if occ:
        add(f"![occlusion on {name}](figures/{occ.name})\n")
    if tsne:
        add(f"![t-SNE on {name}](figures/{tsne.name})\n")


def write_report(
    out_dir: str | Path,
    backbones: list[Any],
    measures: dict[str, dict[str, Any]],
    runs: dict[str, Any],
    cfg: Any,
    *,
    suite_dir: str | Path = "results/ablation-predictor-momentum",
    patch_checks: dict[str, dict[int, dict[str, float]]] | None = None,
    real: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``out_dir/README.md``, ``figures/*.png`` and ``summary.json``; return the README's path."""
    from zoo.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    _add_map_r2(measures, cfg)
    d = _Data(backbones, measures)
    # channels for half: bisected below its grid point where every backbone has that measure, else the grid
    exact_half = all(math.isfinite(d.value(b, "channels_half_exact")) for b in backbones if b.variant != "raw-pixels")
    half = "channels_half_exact" if exact_half else "channels_half"
    half_how = "bisected between grid points" if exact_half else "on the power-of-two grid"
    fig_dir = out / "figures"
    figs = {
        "occlusion": _occlusion_figure(d, fig_dir / "occlusion.png", cfg),
        "tsne": _tsne_figure(d, fig_dir / "tsne.png", cfg),
        "channels": _channel_figure(d, fig_dir / "channels.png", cfg),
        "scatter": _scatter_figure(
            d,
            fig_dir / "transfer_scatter.png",
            [
                ("occ_in_mask_ratio", "in-mask / chance"),
                ("pointing", "pointing game"),
                ("channels_half", "channels for half"),
                ("tsne_trustworthiness", "t-SNE trust."),
                ("suite:geometry.effective_rank", "eff. rank"),
                ("suite:nuisance.bg_rgb_r2", "bg colour R²"),
            ],
            _TARGETS,
        ),
    }
    V = d.variants
    seeds = {v: len([b for b in backbones if b.variant == v]) for v in V}
    n_det = sum(1 for b in backbones if "det.AP" in b.metrics)
    det_by_variant = {v: sum(1 for b in backbones if b.variant == v and "det.AP" in b.metrics) for v in V}
    det_desc = ", ".join(f"{v} × {n}" for v, n in det_by_variant.items() if n) or "none"
    det_presets = ", ".join(sorted({str(b.det_preset) for b in backbones if "det.AP" in b.metrics})) or "–"
    det_families = [v for v, n in det_by_variant.items() if n]
    total_s = sum(float(m.get("seconds", 0)) for m in measures.values())
    runs_s = sum(
        float(r[net]["seconds"]) for r in runs.values() for net in ("online", "target") if "seconds" in r.get(net, {})
    )
    L: list[str] = []
    add = L.append
    add("# Interpretability on `shapes`: the four questions, answered with numbers\n")
    add(
        "Every backbone of the published predictor / momentum ablation"
        f" ([`{suite_dir}`](../../../{suite_dir}/README.md):"
        f" {len(V) - len([v for v in V if v in BASELINES])} BYOL variants × 3 seeds, random-init and supervised × 3"
        f" seeds, raw pixels once; ResNet-18-w16, 32 px, 1,872 BYOL steps) measured on `shapes` **test**, where each"
        " image's shape mask is re-rendered from its factors. ± is the sample std over seeds 0, 1, 2. Regenerate with\n"
    )
    add("```bash")
    add(
        "byol-bench interpret --suite-dir results/ablation-predictor-momentum --out results/analysis/shapes \\\n"
        + (f"    --real-suite {real[0]['suite_dir']} \\\n" if real else "")
        + "".join(f"    --pretrain-run {k}={v['run_dir']} \\\n" for k, v in sorted(runs.items())).rstrip(" \\\n")
    )
    add("```\n")
    add(
        f"The measures of each backbone are cached in [`records/`](records/) (artifact sha256, the measure config,"
        f" code version); with them the page re-renders in seconds, without the artifacts. Measuring the"
        f" {len(measures)} suite backbones took {total_s / 60:.0f} min, the {2 * len(runs)} re-pretrained networks"
        f" {runs_s / 60:.0f} min more (plus their kNN / linear records), on one thread of the shared 2-core CPU."
        " Without the `--pretrain-run` folders (they are not committed; `byol-bench pretrain"
        " pretrain/configs/byol.yaml seed=S --out DIR` re-creates them bit for bit) the cached records are used."
        " Definitions:"
        " `downstream/analysis/attribution.py` (occlusion), `neurons.py` (channels), `maps.py` (t-SNE numbers),"
        " `transfer.py` (Spearman), the choices in `interpret.py` (`InterpretConfig`), this page in"
        " `benchmarks/shapes_report.py`.\n"
    )

    brief_at = len(L)
    # ---- Q1
    add("## 1. What does the representation encode?\n")
    add(
        "Linear probes of the shape and of each nuisance factor from the pooled backbone features (the suite's"
        " `nuisance` records: train → test, L2 on val; R² for factors, 0 = not decodable), beside the suite's kNN.\n"
    )
    rows = []
    for v in V:
        rows.append(
            [f"`{v}`", str(seeds[v])]
            + [
                d.ms(v, f"suite:{k}", 3)
                for k in (
                    "knn.top1_k20",
                    "nuisance.shape_top1",
                    "nuisance.fg_rgb_r2",
                    "nuisance.bg_rgb_r2",
                    "nuisance.cx_r2",
                    "nuisance.radius_r2",
                    "nuisance.rotation_r2",
                    "nuisance.noise_r2",
                )
            ]
        )
    add(
        _table(
            [
                "variant",
                "seeds",
                "kNN top-1",
                "shape (probe top-1)",
                "shape colour R²",
                "background colour R²",
                "position x R²",
                "radius R²",
                "rotation R²",
                "noise R²",
            ],
            rows,
        )
    )
    same = "no clear difference (under two seed stds)"
    cmp_bg, z_bg = _compare(d, "byol", "random-init", "suite:nuisance.bg_rgb_r2")
    cmp_sh, z_sh = _compare(d, "byol", "random-init", "suite:nuisance.shape_top1")
    add(
        f"\n**Reading.** Shape: {cmp_sh} ({_direction(z_sh, 'BYOL encodes more of it', 'BYOL encodes less', same)});"
        f" background colour: {cmp_bg} ({_direction(z_bg, 'BYOL keeps more', 'BYOL discards part of it', same)})."
        f" Supervised training reaches {d.ms('supervised', 'suite:nuisance.shape_top1')} on the shape. BYOL's"
        " representation is mostly *not* the shape: position, size and both colours stay linearly decodable, and"
        " the shape probe stays far below supervised.\n"
    )

    # ---- Q2
    add("## 2. How does each module shape it?\n")
    add("### Each ablation variant side by side\n")
    rows = []
    for v in V:
        rows.append(
            [f"`{v}`"]
            + [d.ms(v, "suite:knn.top1_k20")]
            + [d.ms(v, "suite:geometry.effective_rank", 1), d.ms(v, "suite:geometry.std_normalized_sqrt_d", 2)]
            + [d.ms(v, "suite:geometry.std_normalized_sqrt_d_projector", 3)]
            + [d.ms(v, "suite:nuisance.bg_rgb_r2"), d.ms(v, "occ_in_mask"), d.ms(v, "occ_in_mask_ratio", 2)]
            + [d.ms(v, "pointing"), d.seeds(v, half)]
        )
    add(
        _table(
            [
                "variant",
                "kNN top-1",
                "eff. rank (pool)",
                "std·√D (pool)",
                "std·√D (projector)",
                "bg colour R²",
                "occlusion in-mask",
                "in-mask / chance (per-image mean)",
                "pointing game",
                "channels for half (per seed)",
            ],
            rows,
        )
    )
    add("")
    # online vs target, backbone vs projector vs predictor
    if runs:
        keys = sorted(runs)
        same = [k for k in keys if runs[k].get("online_equals_published")]
        add("### Online vs target network, and backbone vs projector vs predictor\n")
        add(
            f"The published runs kept only the online backbone, so `byol` was re-pretrained ({', '.join(keys)};"
            " `pretrain/configs/byol.yaml`, one thread) keeping the checkpoint: the re-run online backbones are"
            f" **bit-identical** to the published ones for {len(same)} of {len(keys)} seeds (weights sha256), so"
            " these heads and targets belong to the published backbones. The target backbone is exported with"
            " `byol-bench export RUN --network target` and evaluated like any artifact (kNN and linear: the"
            " suite's evaluators on the full train split).\n"
        )

        def run_vals(net: str, key: str, where: str = "measures") -> list[float]:
            vals = []
            for k in keys:
                src = runs[k][net]
                if where == "measures":
                    vals.append(float(src["measures"].get(key, math.nan)))
                else:
                    ev, _, mk = key.partition(".")
                    vals.append(float(src["eval"].get(ev, {}).get(mk, math.nan)))
            return vals

        rows = []
        for net in ("online", "target"):
            rows.append(
                [net]
                + [fmt_ms(run_vals(net, "knn.top1_k20", "eval")), fmt_ms(run_vals(net, "linear.top1", "eval"))]
                + [fmt_ms(run_vals(net, k)) for k in ("knn_layer3", "occ_in_mask", "pointing", "tsne_trustworthiness")]
                + [fmt_seeds(run_vals(net, "channels_half"))]
            )
        add(
            _table(
                [
                    "network",
                    "kNN top-1",
                    "linear top-1",
                    "kNN layer3",
                    "occlusion in-mask",
                    "pointing game",
                    "t-SNE trust.",
                    "channels for half (per seed, power-of-two grid)",
                ],
                rows,
            )
        )
        diffs = {
            metric: max(
                (
                    abs(float(runs[k]["online"]["eval"][ev][mk]) - float(runs[k]["published"][metric]))
                    for k in keys
                    if runs[k].get("published", {}).get(metric) is not None
                ),
                default=math.nan,
            )
            for metric, (ev, mk) in {"knn.top1_k20": ("knn", "top1_k20"), "linear.top1": ("linear", "top1")}.items()
        }
        add(
            f"\nThe online rows re-evaluate the published backbones: kNN differs from the suite's records by at most"
            f" {diffs['knn.top1_k20']:.4f}, the linear probe by at most {diffs['linear.top1']:.4f} (L-BFGS under"
            " today's code and thread count), so online and target are compared within this table.\n"
        )
        add(
            "Where the shape and the nuisances live along the online network (kNN top-1 of the shape; ridge R² of"
            f" each factor, train → test, λ on val; first {cfg.train_images:,} training images):\n"
        )
        rows = []
        for layer in ("pool", "projector", "predictor"):
            rows.append(
                [f"{'backbone (pool)' if layer == 'pool' else layer}", fmt_ms(run_vals("online", f"knn_{layer}"))]
                + [fmt_ms(run_vals("online", f"r2_{f}_{layer}")) for f in _FACTOR_LABEL]
            )
        rows.append(
            ["target projector", fmt_ms(run_vals("target", "knn_projector"))]
            + [fmt_ms(run_vals("target", f"r2_{f}_projector")) for f in _FACTOR_LABEL]
        )
        add(_table(["output", "kNN top-1 (shape)"] + [f"{v} R²" for v in _FACTOR_LABEL.values()], rows))
        on_knn, tg_knn = (
            mean_std(run_vals("online", "knn.top1_k20", "eval")),
            mean_std(run_vals("target", "knn.top1_k20", "eval")),
        )
        gap = max(on_knn[1], tg_knn[1], 0) if math.isfinite(max(on_knn[1], tg_knn[1])) else 0
        target_vs_online = (
            "the target is ahead"
            if tg_knn[0] > on_knn[0] + gap
            else "the target is behind"
            if tg_knn[0] < on_knn[0] - gap
            else "within seed noise"
        )
        pool_k, proj_k, pred_k = (
            mean_std(run_vals("online", f"knn_{x}"))[0] for x in ("pool", "projector", "predictor")
        )
        module_brief = (
            f"Target ≈ online (kNN {fmt_ms(run_vals('target', 'knn.top1_k20', 'eval'))} vs"
            f" {fmt_ms(run_vals('online', 'knn.top1_k20', 'eval'))}, {target_vs_online}); along the online network"
            f" shape kNN falls backbone {pool_k:.3f} → projector {proj_k:.3f} → predictor {pred_k:.3f}, and the"
            f" predictor drops horizontal position (centre-x R² {mean_std(run_vals('online', 'r2_cx_pool'))[0]:.2f} →"
            f" {mean_std(run_vals('online', 'r2_cx_predictor'))[0]:.2f}) while keeping vertical"
            f" ({mean_std(run_vals('online', 'r2_cy_predictor'))[0]:.2f})."
        )
        add(
            f"\n**Reading.** Target vs online kNN: {tg_knn[0]:.3f} vs {on_knn[0]:.3f}"
            f" ({target_vs_online};"
            " with τ = 0.9 the target trails the online weights by about ten steps). Shape kNN falls from the backbone"
            f" ({pool_k:.3f}) to the projector ({proj_k:.3f}) and the predictor ({pred_k:.3f}). The predictor"
            f" keeps centre y (R² {fmt_ms(run_vals('online', 'r2_cy_pool'))} →"
            f" {fmt_ms(run_vals('online', 'r2_cy_predictor'))})"
            f" but drops centre x ({fmt_ms(run_vals('online', 'r2_cx_pool'))} →"
            f" {fmt_ms(run_vals('online', 'r2_cx_predictor'))}): the likely cause is the horizontal flip (p 0.5, each"
            " view), which makes the other view's x unpredictable and no augmentation does to y; the backbone too"
            " keeps less x than y, and the t-SNE maps below are laid out by y, not x. The momentum and predictor"
            " rows of the table above are the other module ablations: only `no-predictor` collapses (projector"
            " std·√D near 0); slow or frozen targets, by the two-seed-std rule against random-init"
            f" ({d.ms('random-init', 'suite:knn.top1_k20')}) and byol ({d.ms('byol', 'suite:knn.top1_k20')}):"
            f" {'; '.join(_knn_place(d, v) for v in ('tau-1', 'tau-0.999'))}.\n"
        )

    else:
        module_brief = "No re-pretrained runs were given: no online / target or head rows."

    # ---- Q3
    add("## 3. How can it be seen? Occlusion, t-SNE, layers and single channels, with numbers\n")
    add("### Occlusion, quantified\n")
    add(
        f"Sensitivity of patch p = 1 − cos(pooled feature with p replaced by the normalisation mean, pooled"
        f" feature of the image), {cfg.patch} × {cfg.patch}-px non-overlapping patches ({cfg.patch}-px stride, an"
        f" 8 × 8 grid on 32 px), the first {cfg.occlusion_images} test images, the same for every backbone."
        " **In-mask share**: Σ sensitivity × mask coverage / Σ sensitivity (1 = only the shape matters); **chance**:"
        " the shape's share of the image (what a backbone that weighs every pixel alike scores). **Pointing"
        " game**: the most sensitive patch overlaps the shape; chance = the share of patches that overlap it.\n"
    )
    rows = []
    for v in V:
        rows.append(
            [f"`{v}`", str(seeds[v])]
            + [d.ms(v, "occ_in_mask"), d.ms(v, "occ_chance"), d.ms(v, "occ_in_mask_ratio", 2)]
            + [d.ms(v, "pointing"), d.ms(v, "pointing_chance")]
        )
    add(
        _table(
            [
                "variant",
                "seeds",
                "in-mask share",
                "chance (mask area)",
                "share / chance (mean of per-image ratios)",
                "pointing game",
                "pointing chance",
            ],
            rows,
        )
    )
    cmp_occ, z_occ = _compare(d, "byol", "random-init", "occ_in_mask")
    cmp_sup, z_sup = _compare(d, "supervised", "byol", "occ_in_mask")
    cmp_pt, z_pt = _compare(d, "byol", "random-init", "pointing")
    chance = d.mean("byol", "occ_chance")
    more_occ = "BYOL looks at the shape more than random-init does"
    less_occ = "BYOL looks at the shape less than random-init does"
    same_occ = "BYOL does not look at the shape more than random-init does (difference under two seed stds)"
    marginal = " — marginal: the page's rule (difference ≥ 2 × the larger seed std, n = 3 seeds each) is met"
    marginal += f" by {z_occ:.2f} stds" if math.isfinite(z_occ) else ""
    add(
        f"\n**Reading.** {cmp_occ} (chance {chance:.3f}):"
        f" {_direction(z_occ, more_occ, less_occ, same_occ)}{marginal if 2 <= abs(z_occ) < 3 else ''}."
        f" {cmp_sup}: {_direction(z_sup, 'supervised looks at the shape more', 'it looks at it less', same)}."
        f" Pointing game: {cmp_pt} ({_direction(z_pt, 'BYOL higher', 'BYOL lower', 'no clear difference')});"
        f" against its chance {d.mean('byol', 'pointing_chance'):.3f}, BYOL {d.mean('byol', 'pointing'):.3f}."
        f" Raw pixels: {d.ms('raw-pixels', 'occ_in_mask')} in-mask.\n"
    )
    patch_verdict = ""
    if patch_checks:
        sizes = sorted({cfg.patch, *(p for c in patch_checks.values() for p in c)})

        def at(v: str, patch: int, key: str) -> list[float]:
            if patch == cfg.patch:
                return d.values(v, key)
            return [patch_checks.get(b.name, {}).get(patch, {}).get(key, math.nan) for b in backbones if b.variant == v]

        add(
            "\n**Does the patch size change the answer?** The same measures with other patch sizes (same images;"
            " chance of the in-mask share is the mask area for every size, the pointing game's chance grows with"
            " the patch):\n"
        )
        rows = [
            [f"`{v}`"]
            + [fmt_ms(at(v, p, "occ_in_mask")) for p in sizes]
            + [f"{fmt_ms(at(v, p, 'pointing'), 2)} ({mean_std(at(v, p, 'pointing_chance'))[0]:.2f})" for p in sizes]
            for v in V
        ]
        add(
            _table(
                ["variant"] + [f"in-mask share, {p} px" for p in sizes] + [f"pointing (chance), {p} px" for p in sizes],
                rows,
            )
        )
        verdicts = []
        for p in sizes:
            ma, sa, _ = mean_std(at("byol", p, "occ_in_mask"))
            mb, sb, _ = mean_std(at("random-init", p, "occ_in_mask"))
            spread = max(x for x in (sa, sb, 0.0) if math.isfinite(x))
            z = (ma - mb) / spread if spread > 0 else math.nan
            verdicts.append(
                f"{p} px: {_direction(z, 'more', 'less', 'no clear difference')} ({ma:.3f} vs {mb:.3f}, {z:.2f} stds)"
            )
        patch_verdict = (
            "BYOL vs random-init in-mask share by patch size (more / less = a difference of at least 2 × the larger"
            " seed std, n = 3; 2-3 stds is marginal): " + "; ".join(verdicts) + "."
        )
        add("\n" + patch_verdict + "\n")
    if figs["occlusion"]:
        add("![occlusion maps](figures/occlusion.png)\n")

    add("### t-SNE with numbers\n")
    add(
        f"t-SNE (perplexity 30, PCA init, seed 0) of the pooled features of the first {cfg.tsne_images} test"
        " images. **Trustworthiness** (scikit-learn, 10 neighbours; 1 = the map invents no neighbours) and the"
        " class by leave-one-out 5-NN **in the 2-D map**, beside the same vote in the features.\n"
    )
    map_factors = ("fg_luma", "bg_luma", "cx", "cy", "radius")
    rows = [
        [f"`{v}`", d.ms(v, "tsne_trustworthiness"), d.ms(v, "tsne_knn_2d"), d.ms(v, "tsne_knn_features")]
        + [d.ms(v, f"tsne_r2_{f}", 2) for f in map_factors]
        for v in V
    ]
    add(
        _table(
            ["variant", "trustworthiness", "5-NN class in the map", "5-NN class in the features"]
            + [f"map R² {_FACTOR_LABEL[f]}" for f in map_factors],
            rows,
        )
    )
    add(
        "\n*Map R²*: leave-one-out 5-NN regression of the factor in the 2-D map (`maps.loo_knn_r2`): how much the"
        " picture is laid out by that factor, the number behind each colouring below.\n"
    )
    trust_lo = min(d.mean(v, "tsne_trustworthiness") for v in V)
    separated = [v for v in V if d.mean(v, "tsne_knn_2d") >= 0.5]
    groups = {
        v: max(map_factors, key=lambda f, v=v: d.mean(v, f"tsne_r2_{f}")) for v in ("byol", "random-init") if v in V
    }
    add(
        f"**Reading.** Every map keeps its neighbourhoods (trustworthiness ≥ {trust_lo:.3f}). Maps whose 5-NN class"
        f" accuracy reaches 0.5: {', '.join(separated) if separated else 'none'}."
        + "".join(
            f" Of the factors, `{v}`'s map is laid out most by {_FACTOR_LABEL[f]}"
            f" (map R² {d.ms(v, f'tsne_r2_{f}', 2)});"
            f" its 5-NN shape accuracy in the map is {d.ms(v, 'tsne_knn_2d', 2)} (10 classes, chance 0.10; an"
            " accuracy, not on the R² scale)."
            for v, f in groups.items()
        )
        + "\n"
    )
    if figs["tsne"]:
        add("![t-SNE, coloured by class and by each nuisance factor](figures/tsne.png)\n")

    add("### Layers\n")
    add(
        f"kNN top-1 of the shape (k 20, T 0.07, bank = the first {cfg.train_images:,} training images)"
        " per ResNet stage:\n"
    )
    rows = [[f"`{v}`"] + [d.ms(v, f"knn_{layer}") for layer in (*cfg.layers, "pool")] for v in V if v != "raw-pixels"]
    add(_table(["variant", *cfg.layers, "pool (= layer4 pooled)"], rows))
    best_layer = {v: max(cfg.layers, key=lambda layer, v=v: d.mean(v, f"knn_{layer}")) for v in V if v != "raw-pixels"}
    add(
        "\n**Reading.** The stage with the best shape kNN: "
        + ", ".join(f"{v} {best_layer[v]}" for v in V if v != "raw-pixels")
        + ".\n"
    )

    add("### Single channels of the pooled features\n")
    add(
        "Importance of a channel = the val accuracy drop of a logistic probe (standardised features, L2 on val) when"
        " that channel alone is set to its mean. **Channels for half**: the fewest of the most important channels"
        f" (k in {', '.join(map(str, cfg.refit_ks))}, or all) on which a refitted probe reaches half of the full"
        " probe's test accuracy above chance (10 %)"
        + (
            "; below the first grid k that reaches it, the smallest k is then found by bisection between the grid"
            " point below and that k (refitted probes on the top-k channels, assuming accuracy grows with k"
            " there; `neurons.bisect_channels`, records `*.half.json`)"
            if exact_half
            else ", on that power-of-two grid"
        )
        + ". Given per seed (seeds 0/1/2): a mean of counts would be a count no seed had. What the 10 most"
        " important channels track: the correlation ratio η with the shape and mean |r| with factors, beside the"
        " same over all channels.\n"
    )
    rows = []
    for v in V:
        if v == "raw-pixels":
            continue
        rows.append(
            [f"`{v}`", d.ms(v, "probe_top1"), d.seeds(v, half), d.ms(v, "top1_channel_drop")]
            + [f"{d.ms(v, 'top_eta_shape', 2)} ({d.mean(v, 'all_eta_shape'):.2f})"]
            + [
                f"{d.ms(v, f'top_r_{f}', 2)} ({d.mean(v, f'all_r_{f}'):.2f})"
                for f in ("fg_luma", "bg_luma", "cx", "radius")
            ]
        )
    add(
        _table(
            [
                "variant",
                "probe top-1",
                "channels for half (per seed)",
                "top channel's drop",
                "top-10 η shape (all)",
                "top-10 |r| shape luma (all)",
                "top-10 |r| bg luma (all)",
                "top-10 |r| centre x (all)",
                "top-10 |r| radius (all)",
            ],
            rows,
        )
    )
    # the half-way target (chance + half the probe's gap above chance) is within noise of chance when it lies
    # less than about two seed stds of a probe's accuracy (0.02-0.03 here) above chance
    noisy = [v for v in V if v != "raw-pixels" and (d.mean(v, "probe_top1") - 0.1) / 2 < 0.06]
    noisy_half = (
        " For "
        + ", ".join(f"`{v}` (target {0.1 + (d.mean(v, 'probe_top1') - 0.1) / 2:.3f})" for v in noisy)
        + " the half-way target lies less than 0.06 above chance (about two seed stds of a probe's accuracy),"
        " within test noise: their channel counts say little."
        if noisy
        else ""
    )
    byol_colour = max(d.mean("byol", "top_r_bg_luma"), d.mean("byol", "top_r_fg_luma"))
    channel_reading = (
        "they respond more to the shape than to a colour"
        if d.mean("byol", "top_eta_shape") > byol_colour
        else "they respond more to a colour than to the shape"
    )
    add(
        f"\n**Reading.** BYOL needs {d.seeds('byol', half)} channels (per seed, {half_how}) for half of its"
        f" accuracy, supervised {d.seeds('supervised', half)}, random-init {d.seeds('random-init', half)}.{noisy_half}"
        f" BYOL's most important channels: η with the shape {d.ms('byol', 'top_eta_shape', 2)} against |r| with"
        f" background luma {d.ms('byol', 'top_r_bg_luma', 2)} and shape luma {d.ms('byol', 'top_r_fg_luma', 2)}:"
        f" {channel_reading}"
        " (η and |r| are on the same 0–1 scale; η is a little inflated by having 10 groups).\n"
    )
    if figs["channels"]:
        add("![accuracy against channels kept](figures/channels.png)\n")

    # ---- Q4
    add("## 4. What does it mean downstream?\n")
    add(
        "Spearman ρ of each measure with the suite's kNN, linear top-1 and detection AP, across backbones (every"
        f" seed a point; raw pixels has no channel measures; detection AP exists for {n_det} backbones: {det_desc};"
        f" protocol {det_presets}). * p < 0.05, ** p < 0.01 (no correction for the 14 × 3 tests; p exact, over all"
        f" orderings, for n < 10, else scipy's t-approximation). Detection AP is"
        " read from whatever detection records name the same artifact, so re-running this command after new"
        " detection records land updates the column.\n"
    )
    rows_all, table_all = _spearman_rows(d, lambda b: True, half)
    add("**All backbones** (BYOL variants and baselines):\n")
    add(_table(["measure", "kNN top-1", "linear top-1", "detection AP"], rows_all))
    rows_byol, table_byol = _spearman_rows(d, lambda b: b.variant not in BASELINES, half)
    n_byol = len([b for b in backbones if b.variant not in BASELINES])
    add(f"\n**BYOL variants only** ({n_byol} backbones: does a measure rank BYOL runs by transfer?):\n")
    add(_table(["measure", "kNN top-1", "linear top-1", "detection AP"], rows_byol))

    add("\n**Reading.**")
    for t, tl in _TARGETS:
        s_all, s_byol = _strong(table_all, t), _strong(table_byol, t)
        add(
            f"- {tl}: across all backbones {', '.join(s_all) if s_all else 'no measure'} (|ρ| ≥ 0.5, p < 0.01);"
            f" within the BYOL variants {', '.join(s_byol) if s_byol else '**none**'}."
        )
    occ_b = table_byol["occ_in_mask"]["suite:knn.top1_k20"]
    pt_b = table_byol["pointing"]["suite:knn.top1_k20"]
    ovk = _occlusion_vs_knn(d)
    occ_l, pt_l = ovk["occ_in_mask"]["learned"], ovk["pointing"]["learned"]
    occ_m, pt_m = ovk["occ_in_mask"]["variant_means"], ovk["pointing"]["variant_means"]

    def negative(s: dict[str, float]) -> bool:
        return math.isfinite(s["rho"]) and s["rho"] < 0 and s["p"] < 0.05

    excluded = ", ".join(f"`{v}`" for v in NOT_LEARNED)
    if negative(occ_b) and negative(occ_l):
        head = "Looking at the shape does not predict transfer; within BYOL it points the wrong way"
        tail = "the negative ρ holds also without them"
    elif negative(occ_b):
        head = (
            "Looking at the shape does not predict transfer; within BYOL the negative ρ comes from the collapsed"
            " and frozen-target variants"
        )
        tail = "without them no ρ is significant" if not (negative(pt_l) or negative(occ_l)) else "part of it stays"
    else:
        head = "Looking at the shape does not predict transfer within BYOL"
        tail = "without them"
    occ_line = (
        f"- **{head}**: with every BYOL seed a point, occlusion in-mask share {_rho_text(occ_b)} and pointing"
        f" game {_rho_text(pt_b)} with kNN. The collapsed `no-predictor` (in-mask"
        f" {d.ms('no-predictor', 'occ_in_mask')},"
        f" kNN {d.ms('no-predictor', 'suite:knn.top1_k20')}) and `tau-1` (pointing {d.ms('tau-1', 'pointing')})"
        " look at the shape more than `byol` does while telling shapes apart far worse. Without"
        f" {excluded} (the variants whose target collapsed or stayed near its initialisation): in-mask share"
        f" {_rho_text(occ_l)}, pointing game {_rho_text(pt_l)}: {tail}. The seeds of one variant are not"
        " independent points; over the variant means (one point per variant, p exact): in-mask share"
        f" {_rho_text(occ_m)}, pointing game {_rho_text(pt_m)}; over the means of the other variants: in-mask"
        f" share {_rho_text(ovk['occ_in_mask']['learned_variant_means'])}, pointing game"
        f" {_rho_text(ovk['pointing']['learned_variant_means'])}."
    )
    add(occ_line)
    det_n = int(table_all["occ_in_mask"]["suite:det.AP"]["n"])
    det_order = " < ".join(sorted(det_families, key=lambda v: d.mean(v, "suite:det.AP")))
    add(
        f"- **Detection: nothing can be said beyond the family order.** {det_n} backbones from"
        f" {len(det_families)} families ({det_order} in mean AP, protocol {det_presets}) have detection AP;"
        f" any measure that orders those families gets a high ρ, and within BYOL"
        f" ({sum(det_by_variant[v] for v in det_families if v not in BASELINES)} backbones) no ρ can be tested."
        if det_n < 12
        else f"- Detection AP: {det_n} backbones (protocol {det_presets})."
    )
    add(
        "- With the baselines in, the families' order (supervised ≫ BYOL ≈ good variants > random-init,"
        " collapsed) drives most of ρ; the BYOL-only table is the test of whether a measure tracks transfer"
        " within one method. The last two rows are class probes themselves and are shown for scale only.\n"
    )
    if figs["scatter"]:
        add("![measures against transfer](figures/transfer_scatter.png)\n")

    for group in real or []:
        _real_section(add, group, out)

    add("## What is not here\n")
    add(
        "- The projector / predictor and online / target rows exist only for the default `byol` (re-pretrained,"
        " 3 seeds); the other variants' published runs kept no heads or checkpoints.\n"
        f"- Detection AP covers {n_det} backbones ({det_desc}; protocol {det_presets}), so its column is thin;"
        " re-run the command as the detection suite adds records.\n"
        + ("" if real else "- No real-image (Fashion-MNIST) section.\n")
    )
    best_l = best_layer.get("byol", "?")
    brief = [
        "## The answers in brief\n",
        f"1. **What BYOL encodes.** More shape than a random network (linear probe"
        f" {d.ms('byol', 'suite:nuisance.shape_top1')} vs {d.ms('random-init', 'suite:nuisance.shape_top1')};"
        f" supervised {d.ms('supervised', 'suite:nuisance.shape_top1')}), less background colour (R²"
        f" {d.ms('byol', 'suite:nuisance.bg_rgb_r2')} vs {d.ms('random-init', 'suite:nuisance.bg_rgb_r2')}), but"
        f" position (x R² {d.ms('byol', 'suite:nuisance.cx_r2')}), size (radius R²"
        f" {d.ms('byol', 'suite:nuisance.radius_r2')}) and both colours stay linearly decodable although crops and"
        " colour jitter randomise them (the pixel noise σ is not linearly decodable from any backbone, raw pixels"
        " included).",
        f"2. **Modules.** The predictor is what keeps BYOL from collapsing (`no-predictor`: projector std·√D"
        f" {d.ms('no-predictor', 'suite:geometry.std_normalized_sqrt_d_projector')}, kNN"
        f" {d.ms('no-predictor', 'suite:knn.top1_k20')}); slow or frozen targets, against random-init"
        f" ({d.ms('random-init', 'suite:knn.top1_k20')}) and byol ({d.ms('byol', 'suite:knn.top1_k20')}), by the"
        f" two-seed-std rule: {'; '.join(_knn_place(d, v) for v in ('tau-1', 'tau-0.999'))}. " + module_brief,
        f"3. **Seen, with numbers.** Occlusion: {d.ms('byol', 'occ_in_mask')} of BYOL's sensitivity falls on the"
        f" shape (chance {d.mean('byol', 'occ_chance'):.3f}, random-init {d.ms('random-init', 'occ_in_mask')},"
        f" supervised {d.ms('supervised', 'occ_in_mask')}; {patch_verdict.rstrip('.') or 'one patch size'};"
        f" pointing game {d.ms('byol', 'pointing')} against its chance {d.mean('byol', 'pointing_chance'):.3f})."
        " t-SNE maps are trustworthy"
        f" ({d.ms('byol', 'tsne_trustworthiness')}); of the factors, BYOL's is laid out most by"
        f" {_FACTOR_LABEL[groups.get('byol', 'cy')]} (map R² {d.ms('byol', 'tsne_r2_' + groups.get('byol', 'cy'), 2)});"
        f" the shape's 5-NN accuracy in the map is {d.ms('byol', 'tsne_knn_2d')} (10 classes, chance 0.10)."
        f" Shape kNN peaks at {best_l} for BYOL. Half of"
        f" BYOL's probe accuracy above chance needs {d.seeds('byol', half)} channels per seed ({half_how};"
        f" supervised {d.seeds('supervised', half)}), and its most important channels track colour (|r| with"
        f" background luma {d.ms('byol', 'top_r_bg_luma', 2)}) more than shape (η {d.ms('byol', 'top_eta_shape', 2)}).",
        "4. **Downstream.** "
        + (
            f"Within BYOL (every seed a point), the measures with |ρ| ≥ 0.5 and p < 0.01 against kNN:"
            f" {', '.join(_strong(table_byol, 'suite:knn.top1_k20')) or 'none'}. Occlusion in-mask share"
            f" {_rho_text(occ_b)} and pointing game {_rho_text(pt_b)}; without {excluded}: {_rho_text(occ_l)} and"
            f" {_rho_text(pt_l)}. Detection AP ({det_presets}) exists for"
            f" {det_n} backbones"
            f" ({det_desc}): no measure can be said to predict it beyond the family order."
        )
        + "\n",
    ]
    L[brief_at:brief_at] = brief
    text = "\n".join(L) + "\n"
    readme = out / "README.md"
    atomic_write_text(readme, text)
    summary = {
        "per_variant": {
            v: {
                k: mean_std(d.values(v, k))[:2]
                for k in sorted({key for b in backbones for key in measures[b.name]["metrics"]})
            }
            for v in V
        },
        "spearman_all": table_all,
        "spearman_byol": table_byol,
        "occlusion_vs_knn_byol": ovk,
        "runs": runs,
        "detection_sources": {b.name: b.det_source for b in backbones if b.det_source},
    }
    atomic_write_json(out / "summary.json", summary)
    return readme
