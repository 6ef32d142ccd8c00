"""fashion-mnist / mnist loaders on generated IDX files in every supported layout, and on bad files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.dataset_fakes import write_idx, write_mnist_idx
from zoo.datasets import DatasetError, idx, list_datasets, load_dataset

N_TRAIN, N_TEST = 60, 20


@pytest.fixture
def small_counts(monkeypatch):
    """The fakes hold 60 / 20 images: the loader checks the official counts, so make those the fakes'."""
    monkeypatch.setattr(idx, "OFFICIAL_COUNTS", {"train": N_TRAIN, "t10k": N_TEST})
    idx._official.cache_clear()
    yield
    idx._official.cache_clear()


LAYOUTS = {
    "debian-flat-gz": ("fashion-mnist", "", True),
    "torchvision-fashion": ("fashion-mnist", "FashionMNIST/raw", False),
    "torchvision-mnist": ("mnist", "MNIST/raw", True),
    "flat-uncompressed": ("mnist", "", False),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_the_same_images_labels_and_splits(tmp_path, small_counts, layout):
    name, sub, gz = LAYOUTS[layout]
    write_mnist_idx(tmp_path / sub, N_TRAIN, N_TEST, gz=gz)
    splits = {s: load_dataset(name, s, root=str(tmp_path)) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 50, "val": 10, "test": 20}
    # val is a stratified 10 % of train: one image per class here, and disjoint from train
    assert sorted(splits["val"].targets.tolist()) == list(range(10))
    test = splits["test"]
    assert test.images.shape == (20, 28, 28, 3) and test.images.dtype == np.uint8
    assert (test.images[..., 0] == test.images[..., 2]).all()  # grayscale -> three equal channels
    # the bright bar sits at row 2c+3 of each image of class c: images and labels are read in step
    rows = test.images[..., 0].mean(axis=2).argmax(axis=1)
    assert (rows == 2 * test.targets + 3).all()
    assert test.mean == (idx.STATS[name][0],) * 3
    assert len(test.classes) == 10


def test_resize_and_native_size(tmp_path, small_counts):
    write_mnist_idx(tmp_path, N_TRAIN, N_TEST)
    assert load_dataset("mnist", "test", root=str(tmp_path)).images.shape[1:] == (28, 28, 3)
    big = load_dataset("mnist", "test", root=str(tmp_path), image_size=32)
    assert big.images.shape[1:] == (32, 32, 3) and big.image_size == 32


def test_no_root_uses_debian_folder_when_present(tmp_path, small_counts, monkeypatch):
    write_mnist_idx(tmp_path / "deb", N_TRAIN, N_TEST)
    monkeypatch.setitem(idx.DEBIAN_ROOTS, "fashion-mnist", str(tmp_path / "deb"))
    assert len(load_dataset("fashion-mnist", "test")) == N_TEST
    row = next(r for r in list_datasets() if r["name"] == "fashion-mnist")
    assert row["available"] and row["sizes"] == {"train": 50, "val": 10, "test": 20}
    monkeypatch.setitem(idx.DEBIAN_ROOTS, "fashion-mnist", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="pass root"):
        load_dataset("fashion-mnist", "test")


def _break(path: Path, how: str) -> None:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if how == "truncate":
        raw = raw[: len(raw) - 100]
    elif how == "magic":
        raw = bytes([0, 0, 9]) + raw[3:]
    elif how == "count":
        raw = raw[:4] + (5).to_bytes(4, "big") + raw[8:]
    if how == "gzip":
        path.write_bytes(path.read_bytes()[:50])
    else:
        path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize(
    "file,how,message",
    [
        ("train-images-idx3-ubyte.gz", "truncate", "truncated"),
        ("t10k-labels-idx1-ubyte.gz", "truncate", "truncated"),
        ("train-images-idx3-ubyte.gz", "magic", "bad IDX magic"),
        ("t10k-images-idx3-ubyte.gz", "count", "holds 5 items"),
        ("train-labels-idx1-ubyte.gz", "gzip", "cannot read it as gzip"),
    ],
)
def test_bad_files_are_errors_naming_the_file(tmp_path, small_counts, file, how, message):
    write_mnist_idx(tmp_path, N_TRAIN, N_TEST)
    _break(tmp_path / file, how)
    split = "test" if file.startswith("t10k") else "train"
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("fashion-mnist", split, root=str(tmp_path))
    assert str(tmp_path / file) in str(err.value)


def test_missing_file_and_bad_labels_are_errors(tmp_path, small_counts):
    write_mnist_idx(tmp_path, N_TRAIN, N_TEST)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", "test", root=str(tmp_path))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(N_TEST, 12), gz=True)
    with pytest.raises(DatasetError, match="label 12 at index 0 is outside 0-9"):
        load_dataset("fashion-mnist", "test", root=str(tmp_path))
    with pytest.raises(DatasetError, match="expected a directory at .*FashionMNIST"):
        load_dataset("mnist", "test", root=str(tmp_path / "FashionMNIST"))  # absent folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no train-images-idx3-ubyte"):
        load_dataset("mnist", "test", root=str(tmp_path / "empty"))


def test_a_replaced_file_is_read_again(tmp_path, small_counts):
    write_mnist_idx(tmp_path, N_TRAIN, N_TEST, seed=0)
    first = load_dataset("mnist", "test", root=str(tmp_path)).targets.copy()
    write_mnist_idx(tmp_path, N_TRAIN, N_TEST, seed=1)
    os.utime(tmp_path / "t10k-labels-idx1-ubyte.gz", ns=(1, 1))  # a different mtime even within one tick
    second = load_dataset("mnist", "test", root=str(tmp_path)).targets
    assert not np.array_equal(first, second)


REAL = Path(idx.DEBIAN_ROOTS["fashion-mnist"])


@pytest.mark.skipif(
    not REAL.is_dir() and not os.environ.get("BYOL_BENCH_REQUIRE_FASHION_MNIST"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it and sets BYOL_BENCH_REQUIRE_...)",
)
def test_real_fashion_mnist_counts_classes_and_stats():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (54000, 10000)
    assert np.bincount(test.targets).tolist() == [1000] * 10
    gray, _ = idx.official_arrays(idx.find_idx_root("fashion-mnist", None), "train")
    x = gray.astype(np.float64) / 255.0
    assert (round(x.mean(), 4), round(x.std(), 4)) == idx.STATS["fashion-mnist"]


def test_fast_linear_probe_on_grayscale_raw_pixels_solves_one_column_per_pixel(tmp_path, small_counts):
    """Raw pixels of a grayscale set are every pixel three times: the probe solves 784 columns, not 2,352,
    and predicts as the unmerged problem does (same λ chosen, same test top-1)."""
    from downstream.api import evaluate
    from zoo.datasets import DatasetOptions

    write_mnist_idx(tmp_path / "data", N_TRAIN, N_TEST)
    opts = DatasetOptions(root=str(tmp_path / "data"), image_size=32)
    common = ["l2_steps=5", "l2_min=1e-3", "l2_max=10"]
    rec = evaluate("raw-pixels", "linear", "fashion-mnist", dataset_options=opts, overrides=common,
                   cache_dir=tmp_path / "cache")  # fmt: skip
    cols = rec["selection"]["columns"]
    side = 32  # raw pixels' input size; the dataset is loaded at it, so nothing is resized twice
    assert cols["features"] == 3 * side * side  # the raw-pixels "backbone" feeds its input size
    assert cols["solved"] == side * side  # every pixel of the fakes varies, so none is dropped
    # the unmerged problem, solved directly, picks the same λ and scores the same on test
    import torch

    from downstream.linear import fit_logistic_regression, standardize

    def raw(split):
        d = load_dataset("fashion-mnist", split, root=str(tmp_path / "data"), image_size=32)
        x = torch.from_numpy(d.images.reshape(len(d), -1).astype(np.float32))
        return x, torch.from_numpy(d.targets)

    (xtr, ytr), (xte, yte) = raw("train"), raw("test")
    xtr, xte = standardize(xtr, xte)
    W, b = fit_logistic_regression(xtr, ytr, 10, rec["metrics"]["l2"])
    top1 = float(((xte @ W.t() + b).argmax(1) == yte).double().mean())
    assert abs(top1 - rec["metrics"]["top1"]) < 1e-9


def test_dry_run_root_check_uses_the_debian_folder(tmp_path, small_counts, monkeypatch):
    from zoo.datasets.roots import check_root

    monkeypatch.setitem(idx.DEBIAN_ROOTS, "fashion-mnist", str(tmp_path / "absent"))
    assert check_root("fashion-mnist", None) == ["no root given (dataset_options.root / data.root)"]
    write_mnist_idx(tmp_path / "deb", N_TRAIN, N_TEST)
    monkeypatch.setitem(idx.DEBIAN_ROOTS, "fashion-mnist", str(tmp_path / "deb"))
    assert check_root("fashion-mnist", None) == []
    (tmp_path / "deb" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b")
    idx._official.cache_clear()
    assert "t10k-images-idx3-ubyte.gz" in " ".join(check_root("fashion-mnist", None))


def test_paper_baselines_script_on_fakes(tmp_path, small_counts, monkeypatch):
    """The script reads the official train/t10k files (not our split), fits the three Table 3 rows and writes
    its JSON; the fakes' classes are a bright bar at a class-given row, which k-NN and the linear model get."""
    import json
    import sys

    from benchmarks import fashion_mnist_paper_baselines as script

    write_mnist_idx(tmp_path / "data", N_TRAIN, N_TEST)
    out = tmp_path / "paper.json"
    monkeypatch.setattr(sys, "argv", ["x", "--root", str(tmp_path / "data"), "--out", str(out)])
    script.main()
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == set(script.PAPER)
    for name, row in doc["results"].items():
        assert row["paper"] == script.PAPER[name]
        assert row["test_accuracy"] >= 0.9, name
    x, y, xt, yt = script.official(str(tmp_path / "data"))
    assert x.shape == (N_TRAIN, 784) and xt.shape == (N_TEST, 784)  # all 60 official train images, no val cut


def test_linear_columns_perf_script_times_both_problems_to_the_same_objective(tmp_path, small_counts, monkeypatch):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "perf"))
    import linear_columns

    write_mnist_idx(tmp_path / "deb", N_TRAIN, N_TEST)
    monkeypatch.setitem(idx.DEBIAN_ROOTS, "fashion-mnist", str(tmp_path / "deb"))
    argv = ["x", "--iters", "200", "--l2", "0.1", "--results-dir", str(tmp_path / "perf"), "--name", "t"]
    monkeypatch.setattr(sys, "argv", argv)
    linear_columns.main()
    rec = json.loads((tmp_path / "perf" / "t.json").read_text())
    rows = rec["details"]["rows"]
    assert rows["all columns"]["columns"] == 3 * 32 * 32 and rows["merged"]["columns"] == 32 * 32
    assert abs(rows["all columns"]["objective"] - rows["merged"]["objective"]) < 1e-6  # 200 iterations: converged
    assert rec["ratio"] > 0 and rec["details"]["merge_s"] >= 0
