"""Figure files: written, valid PNGs, non-empty, of the size their layout implies; retrieval neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from downstream.analysis.figures import (
    embedding_figure,
    nearest,
    occlusion_figure,
    retrieval_figure,
    umap_available,
)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 5000, f"{path} missing or near-empty"
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        arr = np.asarray(im.convert("L"))
        assert arr.std() > 5, f"{path} is a blank image"
        return im.size


def _clusters(n: int = 60, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    labels = np.arange(n) % 3
    centres = torch.randn(3, d, generator=g) * 5
    return centres[torch.from_numpy(labels)] + torch.randn(n, d, generator=g), labels


def test_embedding_figure_one_panel_per_variant(tmp_path: Path) -> None:
    feats, labels = _clusters()
    one = _png_size(embedding_figure([("a", feats, labels)], tmp_path / "one.png"))
    three = _png_size(embedding_figure([(f"v{i}", feats, labels) for i in range(3)], tmp_path / "three.png"))
    # panels are 3.2 in wide at 110 dpi (≈ 350 px): three panels ≈ two panels wider than one
    assert 2 * 300 < three[0] - one[0] < 2 * 400
    assert abs(three[1] - one[1]) < 20  # one row either way
    if umap_available():
        _png_size(embedding_figure([("a", feats, labels)], tmp_path / "umap.png", method="umap"))
    with pytest.raises(ValueError):
        embedding_figure([("a", feats, labels)], tmp_path / "bad.png", method="pca")


def test_occlusion_and_retrieval_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    maps = torch.rand(4, 16, 16)
    w1, h1 = _png_size(occlusion_figure([("a", maps)], images, tmp_path / "occ1.png"))
    w2, h2 = _png_size(occlusion_figure([("a", maps), ("b", maps * 0)], images, tmp_path / "occ2.png"))
    assert abs(w2 - w1) < 20 and 100 < h2 - h1 < 200  # one more row of ≈ 1.35 in × 110 dpi

    gallery = rng.integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)
    idx = np.tile(np.arange(8), (2, 1))
    w, h = _png_size(
        retrieval_figure(
            [("a", idx), ("b", idx[:, ::-1])],
            images[:2],
            np.array([0, 1]),
            gallery,
            np.arange(20) % 2,
            tmp_path / "r.png",
        )
    )
    assert w > 8 * 90 and h > 4 * 90  # 9 columns, 2 queries × 2 variants = 4 rows of ≈ 1 in


def test_nearest_is_cosine_top_k() -> None:
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    queries = torch.tensor([[10.0, 1.0], [0.0, -1.0]])
    idx = nearest(queries, gallery, k=2)
    assert idx.tolist()[0] == [0, 2]
    assert idx[1, 0] == 0 or idx[1, 0] == 3  # (0, -1) is orthogonal to both ±e1: a tie, never e2
    assert 1 not in idx[1].tolist()


def test_collapsed_features_do_not_crash_the_layout(tmp_path: Path) -> None:
    one_point = torch.ones(40, 6) * torch.arange(1, 41).view(-1, 1)  # one direction, different norms
    from downstream.analysis.figures import project_2d

    assert np.array_equal(project_2d(one_point), np.zeros((40, 2)))
    feats, labels = _clusters(40)
    feats[:30] = feats[0]  # many duplicates (Barnes-Hut t-SNE segfaults on these)
    xy = project_2d(feats)
    assert xy.shape == (40, 2) and np.isfinite(xy).all()
