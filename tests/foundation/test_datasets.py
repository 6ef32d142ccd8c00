import json
from pathlib import Path

import numpy as np
import pytest

from zoo.datasets import (
    DatasetError,
    DatasetOptions,
    digit_arrays,
    digit_m_layers,
    list_datasets,
    load_dataset,
    split_indices,
    validate_coco_json,
)


@pytest.mark.parametrize("name", ["digits", "digits-m"])
def test_digit_splits_are_disjoint_stratified_and_complete(name):
    splits = {s: load_dataset(name, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 1078, "val": 359, "test": 360}
    # no image index appears in two splits (indices are recomputed the same way the builder does)
    _, labels, _ = digit_arrays(name)
    parts = split_indices(labels)
    all_idx = np.concatenate(list(parts.values()))
    assert len(np.unique(all_idx)) == len(labels) == 1797
    for a in parts:
        for b in parts:
            if a != b:
                assert not set(parts[a]) & set(parts[b])
    # stratified: every class in every split, proportions close to 60/20/20
    for s, d in splits.items():
        counts = np.bincount(d.targets, minlength=10)
        assert (counts > 0).all(), s
    ratio = np.bincount(splits["train"].targets) / np.bincount(labels)
    assert np.allclose(ratio, 0.6, atol=0.02)


def test_digit_images_shape_dtype_and_size_option():
    d = load_dataset("digits", "train", image_size=24)
    imgs, y = d.arrays()
    assert imgs.shape == (1078, 24, 24, 3) and imgs.dtype == np.uint8
    assert (imgs[..., 0] == imgs[..., 2]).all()  # grey replicated to 3 channels
    assert imgs.max() == 255 and y.dtype == np.int64


def test_digits_m_is_deterministic_from_seed(tmp_path):
    a, la, _ = digit_arrays("digits-m", 32, seed=3, cache_dir=tmp_path / "a")
    b, lb, _ = digit_arrays("digits-m", 32, seed=3, cache_dir=tmp_path / "b")
    c, _, _ = digit_arrays("digits-m", 32, seed=4, cache_dir=tmp_path / "c")
    assert a.tobytes() == b.tobytes() and (la == lb).all()
    assert a.tobytes() != c.tobytes()
    # colour: the background photo makes channels differ (plain digits have identical channels)
    assert (a[..., 0] != a[..., 2]).mean() > 0.3


def test_digits_m_follows_mnist_m_blend(tmp_path):
    plain, _, _ = digit_arrays("digits", 16, cache_dir=tmp_path)
    blended, _, _ = digit_arrays("digits-m", 16, seed=0, cache_dir=tmp_path)
    # where the digit is black the output is the photo itself, where it is white it is 255 - photo:
    # so |out - digit| must be the same photo in every channel region — check the definition directly
    digit = plain[..., :1].astype(int)
    photo_a = np.abs(blended.astype(int) - digit)  # = photo where photo >= digit
    photo_b = blended.astype(int) + digit  # = photo where photo < digit
    ok = (np.abs(photo_a - digit) == blended) | (np.abs(photo_b - digit) == blended)
    assert ok.all()
    assert (photo_a.clip(0, 255) == photo_a).all() and (photo_b <= 510).all()


def test_digit_m_layers_match_the_split_and_recompose_it(tmp_path):
    opts = DatasetOptions(image_size=16, cache_dir=str(tmp_path))
    split = load_dataset("digits-m", "val", opts)
    plain = load_dataset("digits", "val", opts)
    glyphs, bank = digit_m_layers("val", 16, num_backgrounds=32, cache_dir=tmp_path)
    assert glyphs.shape == (len(split.targets), 16, 16) and glyphs.dtype == np.uint8
    assert (glyphs == plain.images[..., 0]).all()  # same images, same order as the digits-m split
    assert bank.shape == (32, 16, 16, 3) and bank.dtype == np.uint8 and bank.std() > 10
    again, bank2 = digit_m_layers("val", 16, num_backgrounds=32, cache_dir=tmp_path)
    assert (bank == bank2).all() and (again == glyphs).all()
    # a glyph over a bank photo is a digits-m image: where the glyph is 0 the photo shows unchanged
    composed = np.abs(bank[0].astype(int) - glyphs[0][..., None].astype(int))
    assert (composed[glyphs[0] == 0] == bank[0][glyphs[0] == 0]).all()
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        digit_m_layers("dev", 16, cache_dir=tmp_path)


def test_cache_is_reused_and_rebuilt_when_corrupt(tmp_path):
    a, _, _ = digit_arrays("digits", 16, cache_dir=tmp_path)
    files = list(tmp_path.glob("digits-16px-*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    digit_arrays("digits", 16, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    files[0].write_bytes(b"half-written")
    b, _, _ = digit_arrays("digits", 16, cache_dir=tmp_path)
    assert a.tobytes() == b.tobytes()  # rebuilt, same bytes
    # a different recipe gets its own file
    digit_arrays("digits", 20, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("digits-*.npz"))) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_digits_det_is_valid_coco(tmp_path):
    from pycocotools.coco import COCO

    opts = DatasetOptions(cache_dir=str(tmp_path), det_train_images=12, det_val_images=5)
    train = load_dataset("digits-det", "train", opts)
    val = load_dataset("digits-det", "val", opts)
    for split, n in ((train, 12), (val, 5)):
        assert split.json_path.name == f"instances_{split.split}.json"
        coco = COCO(str(split.json_path))
        assert len(coco.getImgIds()) == n
        assert sorted(coco.getCatIds()) == list(range(10))
        validate_coco_json(split.json_path, split.image_dir)
        for img in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            assert 1 <= len(anns) <= 6
            assert (split.image_dir / img["file_name"]).is_file()
    # same recipe → same bytes
    again = load_dataset("digits-det", "train", DatasetOptions(cache_dir=str(tmp_path / "x"), det_train_images=12))
    assert (
        json.loads(again.json_path.read_text())["annotations"] == json.loads(train.json_path.read_text())["annotations"]
    )


def test_digits_det_boxes_are_exact(tmp_path):
    from PIL import Image

    split = load_dataset("digits-det", "train", DatasetOptions(cache_dir=str(tmp_path), det_train_images=6))
    coco = json.loads(split.json_path.read_text())
    bg_only = {}
    for ann in coco["annotations"]:
        x, y, w, h = (int(v) for v in ann["bbox"])
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        bg_only.setdefault(ann["image_id"], []).append((x, y, w, h))
    # boxes do not overlap heavily
    for boxes in bg_only.values():
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
                ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
                inter = iw * ih
                assert inter / (a[2] * a[3] + b[2] * b[3] - inter) <= 0.1 + 1e-9
    assert Image.open(split.image_dir / coco["images"][0]["file_name"]).size == (128, 128)


def _write_coco(path: Path, **changes):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 2, "name": "two"}],
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][0][field] = value
        else:
            del data[section]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"annotations": None}, "missing top-level list 'annotations'"),
        ({"annotations__category_id": 9}, "unknown category_id 9"),
        ({"annotations__bbox": [90, 10, 20, 20]}, "lies outside image"),
        ({"annotations__bbox": [1, 1, 0, 5]}, "non-positive size"),
        ({"annotations__image_id": 5}, "unknown image_id 5"),
    ],
)
def test_validate_coco_json_names_the_problem(tmp_path, changes, message):
    if "annotations" in changes and changes["annotations"] is None:
        changes = {"annotations": None}
    path = _write_coco(tmp_path / "bad.json", **changes)
    with pytest.raises(DatasetError, match=message) as info:
        validate_coco_json(path)
    assert str(path) in str(info.value)


def test_validate_coco_json_missing_image_file(tmp_path):
    path = _write_coco(tmp_path / "ok.json")
    assert validate_coco_json(path) == ["two"]
    with pytest.raises(DatasetError, match="'a.png' not found"):
        validate_coco_json(path, image_dir=tmp_path)


def test_unknown_dataset_and_split_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope", "train")
    with pytest.raises(DatasetError, match="no split 'test'"):
        load_dataset("digits-det", "test")
    with pytest.raises(DatasetError, match="pass root=PATH"):
        load_dataset("cifar10", "train")
    with pytest.raises(DatasetError, match=str(tmp_path / "missing")):
        load_dataset("cifar10", "train", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="torchvision found no extracted cifar10"):
        load_dataset("cifar10", "train", root=str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="instances_train.json"):
        load_dataset("coco", "train", root=str(tmp_path / "empty"))


def test_imagefolder_split_and_errors(tmp_path):
    from PIL import Image

    root = tmp_path / "folder"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((12, 10, 3), i * 20, np.uint8)).save(root / c / f"{i}.png")
    parts = {s: load_dataset("imagefolder", s, root=str(root), image_size=8) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 20
    assert not set(parts["train"].paths) & set(parts["test"].paths)
    img, label = parts["train"][0]
    assert img.size == (8, 8) and label in (0, 1)
    assert parts["test"].arrays()[0].shape[1:] == (8, 8, 3)
    (tmp_path / "noclasses").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset("imagefolder", "train", root=str(tmp_path / "noclasses"))


def test_cifar_from_local_files(tmp_path, monkeypatch):
    """A tiny file in torchvision's CIFAR-10 layout loads without any download."""
    import pickle

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        with open(base / fname, "wb") as fh:
            pickle.dump(data, fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    # torchvision verifies md5 sums of the official files; accept this synthetic copy in this test only
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    train = load_dataset("cifar10", "train", root=str(tmp_path))
    val = load_dataset("cifar10", "val", root=str(tmp_path))
    test = load_dataset("cifar10", "test", root=str(tmp_path))
    assert len(train) + len(val) == 100 and len(val) == 10 and len(test) == 20
    assert train.images.shape[1:] == (32, 32, 3)


def test_list_datasets_reports_availability():
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["digits"]["available"] and rows["digits"]["sizes"]["test"] == 360
    assert not rows["cifar10"]["available"] and "--root" in rows["cifar10"]["sizes"]
