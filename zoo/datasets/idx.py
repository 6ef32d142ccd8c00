"""``fashion-mnist`` and ``mnist``: the official IDX files, read from local disk and never downloaded.

Both ship as four IDX files (LeCun et al.'s format: a big-endian header ``0x00 0x00 <type> <ndim>``, one
big-endian int32 per dimension, then the raw bytes), gzipped or not:

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

``root`` may be Debian's folder (``apt-get install dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist/``), torchvision's layout (``<root>/FashionMNIST/raw/``,
``<root>/MNIST/raw/``) or any flat folder holding the four files. Without a root, Debian's folder is used
when it exists. Every header is checked (magic number, dimensions, the official counts 60,000 / 10,000,
labels in 0–9) and so is the payload's length: a missing, truncated or corrupt file is a ``DatasetError``
naming the file, never a short dataset.

Splits: ``val`` is a fixed stratified 10 % of the official train set (seed 0, the rule of ``cifar10``),
``train`` the other 90 % (54,000) and ``test`` the official 10,000. The grayscale images become three equal
channels; ``image_size`` 28 is native, any other size is a bilinear resize (PIL, as ``cifar10``).
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from zoo.datasets.core import ClassificationSplit, DatasetError, DatasetOptions, register_dataset, split_indices

# Debian's dataset-fashion-mnist package; the MNIST package of the same family uses the sibling folder
DEBIAN_ROOTS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
_TORCHVISION_DIRS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
# the official split sizes (Xiao et al. 2017, arXiv 1708.07747, Sec. 2; LeCun's MNIST page)
OFFICIAL_COUNTS = {"train": 60000, "t10k": 10000}
NATIVE_SIZE = 28
_IDX_UBYTE = 0x08

CLASSES = {
    # the order of the labels 0-9 in the Fashion-MNIST README's "Labels" table
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "mnist": [str(d) for d in range(10)],
}
# Mean and std of the 60,000 official training images' pixels in [0, 1] (the same on all three channels),
# computed from Debian's files: ``x = official_arrays(find_idx_root(name, None), "train")[0] / 255``,
# ``x.mean()``, ``x.std()``; tests/foundation/test_idx.py recomputes them when the files are installed.
STATS = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}


def find_idx_root(name: str, root: str | os.PathLike | None) -> Path:
    """The folder holding ``name``'s four IDX files under ``root`` (or Debian's folder when ``root`` is None)."""
    if root is None:
        if not Path(DEBIAN_ROOTS[name]).is_dir():
            raise DatasetError(
                f"{name}: no root given and Debian's folder {DEBIAN_ROOTS[name]} does not exist; "
                f"`apt-get install dataset-{name}` or pass root=PATH (we never download)"
            )
        root = DEBIAN_ROOTS[name]
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"{name}: expected a directory at {base}, found none")
    candidates = [base / _TORCHVISION_DIRS[name] / "raw", base / "raw", base]
    for folder in candidates:
        if _idx_file(folder, "train-images-idx3-ubyte") is not None:
            return folder
    raise DatasetError(
        f"{name}: no train-images-idx3-ubyte[.gz] in any of {', '.join(str(c) for c in candidates)} "
        f"(expected the four official IDX files, gzipped or not)"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path, ndim: int, count: int) -> np.ndarray:
    """The uint8 array of IDX file ``path``, checking its magic, ``ndim``, ``count`` and payload length."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read it as {'gzip' if path.suffix == '.gz' else 'IDX'} ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least {header})")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DatasetError(
            f"{path}: bad IDX magic {raw[:4].hex()} (expected 0000{_IDX_UBYTE:02x}{ndim:02x}: "
            f"unsigned bytes, {ndim} dimension(s))"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims[0] != count:
        raise DatasetError(f"{path}: holds {dims[0]} items, the official file holds {count}")
    if ndim == 3 and dims[1:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise DatasetError(f"{path}: images are {dims[1]}x{dims[2]}, expected {NATIVE_SIZE}x{NATIVE_SIZE}")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: payload is {len(raw) - header} bytes, its header {dims} says {expected} "
            f"({'truncated' if len(raw) - header < expected else 'trailing bytes'})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _official(folder: Path, part: str, stamp: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N × 28 × 28`` and labels of ``part`` ("train" or "t10k"); cached per file size and mtime."""
    del stamp  # only part of the cache key: a replaced file is read again
    paths = {}
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{part}-{kind}-ubyte"
        path = _idx_file(folder, stem)
        if path is None:
            raise DatasetError(f"{folder}: missing {stem} (or {stem}.gz)")
        paths[kind] = path
    images = read_idx(paths["images-idx3"], 3, OFFICIAL_COUNTS[part])
    labels = read_idx(paths["labels-idx1"], 1, OFFICIAL_COUNTS[part]).astype(np.int64)
    if labels.max(initial=0) > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise DatasetError(f"{paths['labels-idx1']}: label {labels[bad]} at index {bad} is outside 0-9")
    return images, labels


def official_arrays(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """The official ``part`` ("train" or "t10k") of the IDX files in ``folder``: uint8 images ``N × 28 × 28`` and
    int64 labels, checked as the loaders check them (magic, dimensions, counts, labels 0-9) and cached until a
    file changes. No split of ours: the dataset paper's baselines train on all 60,000."""
    return _official(folder, part, _stamp(folder, part))


def _stamp(folder: Path, part: str) -> tuple[tuple[int, int], ...]:
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        path = _idx_file(folder, f"{part}-{kind}-ubyte")
        st = path.stat() if path is not None else None
        out.append((st.st_size, st.st_mtime_ns) if st else (-1, -1))
    return tuple(out)


def _to_rgb(gray: np.ndarray, size: int) -> np.ndarray:
    """``N × S × S × 3`` uint8 from ``N × 28 × 28`` grayscale, resized bilinearly when ``size`` differs."""
    if size != gray.shape[1]:
        from PIL import Image

        gray = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR)) for g in gray])
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))


def _builder(name: str) -> Callable[[str, DatasetOptions], ClassificationSplit]:
    def build(split: str, opts: DatasetOptions) -> ClassificationSplit:
        folder = find_idx_root(name, opts.root)
        part = "t10k" if split == "test" else "train"
        gray, labels = official_arrays(folder, part)
        if split != "test":
            idx = split_indices(labels, fractions=(0.9, 0.1, 0.0), seed=0)[split]
            gray, labels = gray[idx], labels[idx]
        size = opts.image_size or NATIVE_SIZE
        mean, std = STATS[name]
        return ClassificationSplit(
            name=name,
            split=split,
            classes=list(CLASSES[name]),
            targets=labels.copy(),
            images=_to_rgb(gray, size),
            mean=(mean,) * 3,
            std=(std,) * 3,
            recipe={"kind": name, "root": str(folder), "image_size": size, "val_rule": "10% of train"},
            image_size=size,
        )

    return build


def _default_root(name: str) -> Callable[[], str | None]:
    return lambda: DEBIAN_ROOTS[name] if Path(DEBIAN_ROOTS[name]).is_dir() else None


for _name, _where in [
    ("fashion-mnist", "Debian's folder by default"),
    ("mnist", "torchvision's MNIST/raw/ or a flat folder"),
]:
    register_dataset(
        _name,
        task="classification",
        description=f"{_name}'s official IDX files ({_where}), 28 px grayscale as RGB",
        embedded=False,
        default_root=_default_root(_name),
    )(_builder(_name))
