"""Pictures of representations, one panel (or block of rows) per variant for side-by-side comparison.

- ``embedding_figure``: t-SNE (scikit-learn; van der Maaten & Hinton 2008) — or UMAP (McInnes et al. 2018)
  when ``umap-learn`` is installed — of test features coloured by class, the same layout seed per panel.
- ``occlusion_figure``: occlusion sensitivity maps (``downstream.analysis.occlusion``) over the images,
  one shared colour scale so that a flat (collapsed) map looks flat.
- ``retrieval_figure``: for fixed queries, the top-``k`` gallery images by cosine similarity, framed green
  when of the query's class and red otherwise.

Every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.io import atomic_write_with

__all__ = ["umap_available", "project_2d", "nearest", "embedding_figure", "occlusion_figure", "retrieval_figure"]

# colours of 10 classes that stay distinct for colour-blind readers (matplotlib's tab10)
_CMAP = "tab10"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format="png"))
    _plt().close(fig)
    return path


def umap_available() -> bool:
    """Whether ``umap-learn`` can be imported (UMAP panels are optional)."""
    try:
        import umap  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def project_2d(features: torch.Tensor | np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``N × 2`` layout of l2-normalised features by t-SNE (perplexity 30, PCA init) or UMAP, seeded;
    all zeros when every feature vector points the same way."""
    from threadpoolctl import threadpool_limits

    if method not in ("tsne", "umap"):
        raise ValueError(f"method must be 'tsne' or 'umap', got '{method}'")
    x = F.normalize(torch.as_tensor(features).double(), dim=1).numpy()
    if len(x) < 2 or float(np.ptp(x, axis=0).max()) < 1e-9:
        return np.zeros((len(x), 2))  # every point the same (total collapse): the honest layout is one point
    # one OpenMP thread: a few hundred points are ~8x faster than with every thread on a busy machine
    # (measured: 360 points, 39 s → 5 s on a shared 2-core box); the layout is the same for a given seed
    with threadpool_limits(1):
        if method == "tsne":
            from sklearn.manifold import TSNE

            perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
            # exact gradients up to a few thousand points: scikit-learn's Barnes-Hut tree crashes the process
            # (segmentation fault, seen here) on many duplicate points, which is what collapsed embeddings give
            method_ = "exact" if len(x) <= 2000 else "barnes_hut"
            tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method_)
            return tsne.fit_transform(x)
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def embedding_figure(
    panels: Sequence[tuple[str, torch.Tensor | np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    method: str = "tsne",
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    title: str = "test features",
) -> Path:
    """One scatter panel per ``(variant, features N × D, labels N)``, points coloured by class."""
    plt = _plt()
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    n_classes = int(max(int(np.max(lab)) for _, _, lab in panels)) + 1
    for ax, (name, feats, labels) in zip(axes.flat, panels, strict=False):
        xy = project_2d(feats, method, seed)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=_CMAP, vmin=-0.5, vmax=9.5, s=6, linewidths=0)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(c)), label=(class_names or range(n_classes))[c])
        for c in range(n_classes)
    ]
    fig.legend(handles=handles, loc="center right", title="class", fontsize=8, frameon=False)
    fig.suptitle(f"{'UMAP' if method == 'umap' else 't-SNE'} of {title}, coloured by class", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    return _save(fig, path)


def occlusion_figure(
    rows: Sequence[tuple[str, torch.Tensor]],
    images: np.ndarray,
    path: str | Path,
    *,
    title: str = "occlusion sensitivity: drop of cos(embedding, unoccluded embedding)",
) -> Path:
    """First row the images (uint8 ``N × H × W × 3``), then one row per ``(variant, maps N × H × W)``:
    the map over the greyed image, on one colour scale shared by every panel (the colour bar)."""
    plt = _plt()
    n = len(images)
    vmax = max([float(m.max()) for _, m in rows] + [1e-6])
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.3 * n + 1.2, 1.35 * (len(rows) + 1)), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j])
    axes[0, 0].set_ylabel("image", fontsize=8, rotation=0, ha="right", va="center")
    im = None
    grey = images.astype(np.float32).mean(-1) / 255.0
    for i, (name, maps) in enumerate(rows, start=1):
        for j in range(n):
            axes[i, j].imshow(grey[j], cmap="gray", vmin=0, vmax=1)
            im = axes[i, j].imshow(maps[j].numpy(), cmap="inferno", alpha=0.7, vmin=0, vmax=vmax)
            axes[i, j].set_xlabel(f"max {float(maps[j].max()):.2g}", fontsize=6, labelpad=1)
        axes[i, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="score drop")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def retrieval_figure(
    blocks: Sequence[tuple[str, np.ndarray]],
    query_images: np.ndarray,
    query_labels: np.ndarray,
    gallery_images: np.ndarray,
    gallery_labels: np.ndarray,
    path: str | Path,
) -> Path:
    """For each query a block of rows, one per ``(variant, neighbour indices Q × k)``: the query, then its
    ``k`` nearest gallery images framed green (same class) or red (other class)."""
    plt = _plt()
    k = blocks[0][1].shape[1]
    nq = len(query_images)
    n_rows = nq * len(blocks)
    fig, axes = plt.subplots(n_rows, k + 1, figsize=(1.0 * (k + 1) + 1.0, 1.05 * n_rows), squeeze=False)
    for q in range(nq):
        for b, (name, idx) in enumerate(blocks):
            r = q * len(blocks) + b
            axes[r, 0].imshow(query_images[q])
            axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if b == 0:
                axes[r, 0].set_title(f"query {q} (class {int(query_labels[q])})", fontsize=7, loc="left")
            for c in range(k):
                g = int(idx[q, c])
                ax = axes[r, c + 1]
                ax.imshow(gallery_images[g])
                ok = int(gallery_labels[g]) == int(query_labels[q])
                for s in ax.spines.values():
                    s.set_edgecolor("#1a9850" if ok else "#d73027")
                    s.set_linewidth(2.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"top-{k} retrieval by cosine similarity (green: same class, red: other)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return _save(fig, path)


def nearest(queries: torch.Tensor, gallery: torch.Tensor, k: int = 8) -> np.ndarray:
    """Indices ``Q × k`` of the ``k`` gallery rows most cosine-similar to each query."""
    sim = F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).t()
    return sim.topk(min(k, len(gallery)), dim=1).indices.numpy()
