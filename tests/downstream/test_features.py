"""The shared feature cache: extracted once, reused, rebuilt when the artifact or the file changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from downstream.artifacts import RAW_PIXELS, resolve_artifact
from downstream.context import EvalContext
from downstream.features import FeatureError, feature_cache_key, feature_cache_path, get_features
from zoo.baselines import to_normalized_tensor
from zoo.datasets import DatasetOptions


def _ctx(artifact, cache, image_size=None):
    return EvalContext(
        artifact=artifact,
        dataset="digits",
        dataset_options=DatasetOptions(image_size=image_size),
        seed=0,
        device=torch.device("cpu"),
        work_dir=cache.parent,
        cache_dir=cache,
    )


class _MustNotRun(nn.Module):
    def forward(self, x):
        raise AssertionError("the backbone ran although the features are cached")


def test_cache_reused_and_rebuilt_when_artifact_changes(tiny_artifact, tiny_artifact_other, tmp_path):
    cache = tmp_path / "cache"
    art = resolve_artifact(tiny_artifact)
    feats, labels = get_features(_ctx(art, cache), "test")
    assert feats.dtype == torch.float32 and feats.shape == (360, 512) and labels.shape == (360,)
    files = sorted((cache / "features").rglob("*.safetensors"))
    assert len(files) == 1
    # same artifact (same sha256) in a new context: read from disk, the backbone never runs
    again = resolve_artifact(tiny_artifact)
    again.model = _MustNotRun()
    f2, l2 = get_features(_ctx(again, cache), "test")
    assert torch.equal(f2, feats) and np.array_equal(l2, labels)
    # the cached features are what the backbone computes
    split = _ctx(art, cache).load_split("test")
    with torch.no_grad():
        direct = art.model(to_normalized_tensor(split.images[:5], art.meta.mean, art.meta.std))
    assert torch.allclose(direct, feats[:5], atol=1e-5)
    # a different artifact: a new file, different features
    other = resolve_artifact(tiny_artifact_other)
    f3, _ = get_features(_ctx(other, cache), "test")
    assert len(sorted((cache / "features").rglob("*.safetensors"))) == 2
    assert not torch.allclose(f3, feats)


def test_corrupt_cache_file_is_rebuilt(tiny_artifact, tmp_path, caplog):
    cache = tmp_path / "cache"
    art = resolve_artifact(tiny_artifact)
    feats, _ = get_features(_ctx(art, cache), "val")
    (path,) = (cache / "features").rglob("*.safetensors")
    data = bytearray(path.read_bytes())
    data[-20:] = bytes(20)  # flip the tail of the feature data: the stored sha256 no longer matches
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        f2, _ = get_features(_ctx(resolve_artifact(tiny_artifact), cache), "val")
    assert "rebuilding" in caplog.text
    assert torch.equal(f2, feats)


def test_layers_and_cache_key(tiny_artifact, tmp_path):
    cache = tmp_path / "cache"
    ctx = _ctx(resolve_artifact(tiny_artifact), cache)
    l2, _ = get_features(ctx, "val", layer="layer2")
    assert l2.shape == (359, 128)
    with pytest.raises(FeatureError, match="unknown feature layer"):
        get_features(ctx, "val", layer="layer9")
    split = ctx.load_split("val")
    k_pool = feature_cache_key(ctx.artifact, split, "pool")
    k_l2 = feature_cache_key(ctx.artifact, split, "layer2")
    assert feature_cache_path(cache, k_pool) != feature_cache_path(cache, k_l2)
    assert k_pool["transform"] == {
        "input_size": 16,
        "mean": list(ctx.artifact.meta.mean),
        "std": list(ctx.artifact.meta.std),
    }


def test_feature_dim_mismatch_with_meta(tiny_artifact, tmp_path):
    art = resolve_artifact(tiny_artifact)
    art.meta = dataclasses.replace(art.meta, feature_dim=100)
    with pytest.raises(FeatureError, match="512 dims.*feature_dim 100"):
        get_features(_ctx(art, tmp_path / "cache"), "val")


def test_raw_pixels_are_normalised_flattened_pixels(tmp_path):
    art = resolve_artifact(RAW_PIXELS, image_size=8)
    assert art.meta.feature_dim == 3 * 8 * 8 and art.path.name == RAW_PIXELS
    assert resolve_artifact(RAW_PIXELS, image_size=8).sha256 == art.sha256 != resolve_artifact(RAW_PIXELS, 16).sha256
    ctx = _ctx(art, tmp_path / "cache")
    feats, _ = get_features(ctx, "test")
    split = ctx.load_split("test")
    assert split.images.shape[1:] == (8, 8, 3)
    expected = to_normalized_tensor(split.images, art.meta.mean, art.meta.std).flatten(1)
    assert torch.allclose(feats, expected)
    with pytest.raises(FeatureError, match="raw-pixels"):
        get_features(ctx, "test", layer="layer1")
