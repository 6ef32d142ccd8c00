"""The procedural shapes family: determinism, caching, factor labels and the COCO detection canvases."""

import json

import numpy as np
import pytest

from zoo.datasets import SHAPE_CLASSES, DatasetError, DatasetOptions, load_dataset, shape_factors
from zoo.datasets.shapes import render_shape_mask


def _opts(tmp_path, **kw):
    return DatasetOptions(cache_dir=str(tmp_path), num_train=kw.pop("n", 60), num_val=20, num_test=20, **kw)


def test_shapes_is_deterministic_and_prefix_stable(tmp_path):
    a = load_dataset("shapes", "train", _opts(tmp_path / "a", n=60))
    b = load_dataset("shapes", "train", _opts(tmp_path / "b", n=60))
    c = load_dataset("shapes", "train", _opts(tmp_path / "c", n=30))
    assert a.images.shape == (60, 32, 32, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
    # image i comes from its own stream: making fewer images does not change the first ones
    assert np.array_equal(a.images[:30], c.images) and np.array_equal(a.targets[:30], c.targets)
    other_seed = load_dataset("shapes", "train", _opts(tmp_path / "d", n=60, seed=1))
    assert not np.array_equal(a.images, other_seed.images)
    assert a.classes == list(SHAPE_CLASSES) and set(a.targets.tolist()) <= set(range(10))


def test_splits_are_independent_draws(tmp_path):
    opts = _opts(tmp_path)
    train, val, test = (load_dataset("shapes", s, opts) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (60, 20, 20)
    assert not np.array_equal(train.images[:20], val.images)
    assert not np.array_equal(val.images, test.images)


def test_cached_file_is_reused_and_keyed_by_recipe(tmp_path):
    opts = _opts(tmp_path)
    load_dataset("shapes", "val", opts)
    files = sorted(tmp_path.glob("shapes-val-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    load_dataset("shapes", "val", opts)
    assert files[0].stat().st_mtime_ns == mtime  # read back, not regenerated
    load_dataset("shapes-upright", "val", opts)
    load_dataset("shapes", "val", _opts(tmp_path, image_size=24))
    assert len(list(tmp_path.glob("shapes-val-*.npz"))) == 2  # a changed recipe gets its own file
    files[0].write_bytes(b"truncated")  # a half-written cache is rebuilt, not read
    again = load_dataset("shapes", "val", opts)
    assert again.images.shape == (20, 32, 32, 3)


def test_factors_describe_the_pixels(tmp_path):
    opts = _opts(tmp_path, n=80)
    split = load_dataset("shapes", "train", opts)
    f = shape_factors("train", opts)
    assert f["fg_rgb"].shape == (80, 3) and f["bg_gradient"].shape == (80, 6) and f["cx"].shape == (80,)
    # factors are the drawn ones: the shape lies inside the image and the colours keep the luma gap
    r, cx, cy = f["radius"], f["cx"], f["cy"]
    assert ((r >= 0.22) & (r <= 0.40)).all()
    assert ((cx - r >= -1e-6) & (cx + r <= 1 + 1e-6) & (cy - r >= -1e-6) & (cy + r <= 1 + 1e-6)).all()
    luma = np.array([0.299, 0.587, 0.114])
    assert (np.abs(f["fg_rgb"] @ luma - f["bg_rgb"] @ luma) >= 0.25 - 1e-6).all()
    # the pixel at the image centre of mass of the shape mask has the foreground colour (up to noise + AA)
    for i in range(10):
        label = SHAPE_CLASSES[int(split.targets[i])]
        mask = render_shape_mask(label, cx[i] * 32, cy[i] * 32, r[i] * 32, f["angle"][i], 32)
        inside = mask > 0.99
        assert inside.any(), label
        mean_in = split.images[i][inside].mean(axis=0) / 255.0
        assert np.abs(mean_in - f["fg_rgb"][i]).max() < 0.1, (label, mean_in, f["fg_rgb"][i])
    upright = shape_factors("train", opts, name="shapes-upright")
    assert np.all(upright["angle"] == 0)


def test_every_shape_renders_and_classes_differ():
    masks = [render_shape_mask(s, 16, 16, 12, 0.3, 32) for s in SHAPE_CLASSES]
    areas = [m.mean() for m in masks]
    assert all(0.05 < a < 0.9 for a in areas)
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert np.abs(masks[i] - masks[j]).mean() > 0.01, (SHAPE_CLASSES[i], SHAPE_CLASSES[j])
    with pytest.raises(DatasetError, match="unknown shape 'hexagon'"):
        render_shape_mask("hexagon", 16, 16, 12, 0.0, 32)


def test_shapes_det_is_a_valid_coco_set_with_exact_boxes(tmp_path):
    pycocotools = pytest.importorskip("pycocotools.coco")
    opts = DatasetOptions(cache_dir=str(tmp_path), det_train_images=8, det_val_images=4, det_canvas=96)
    train = load_dataset("shapes-det", "train", opts)
    val = load_dataset("shapes-det", "val", opts)
    assert train.classes == list(SHAPE_CLASSES)
    coco = pycocotools.COCO(str(train.json_path))
    assert len(coco.getImgIds()) == 8 and len(coco.getCatIds()) == 10
    anns = coco.loadAnns(coco.getAnnIds())
    assert 8 <= len(anns) <= 32
    for ann in anns:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and w > 2 and h > 2
    data = json.loads(val.json_path.read_text())
    assert len(data["images"]) == 4
    assert all((val.image_dir / im["file_name"]).is_file() for im in data["images"])
    # the same options give the same canvases (cached under the recipe hash)
    again = load_dataset("shapes-det", "train", opts)
    assert again.json_path == train.json_path


def test_shapes_det_folder_honours_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        opts = DatasetOptions(cache_dir=str(tmp_path), det_train_images=2, det_val_images=1, det_canvas=64)
        split = load_dataset("shapes-det", "train", opts)
    finally:
        os.umask(old)
    root = split.json_path.parents[1]
    assert stat.S_IMODE(root.stat().st_mode) == 0o755  # mkdtemp alone would leave 0700
