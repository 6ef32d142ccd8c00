"""Tiny generated stand-ins for the real datasets, written in their real on-disk layouts.

- ``write_cifar10``: torchvision's ``cifar-10-batches-py/`` (pickled ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``), each batch a dict of ``data`` (uint8 ``N × 3072``, channel-major) and ``labels``.
- ``write_stl10``: ``stl10_binary/`` (``train_X.bin``, ``train_y.bin``, ``unlabeled_X.bin``, ``test_X.bin``,
  ``test_y.bin``: raw uint8, images ``3 × 96 × 96`` column-major, labels 1–10; ``class_names.txt``).
- ``write_imagenet``: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` of varied sizes.
- ``write_coco``: ``annotations/instances_{train,val}2017.json`` with ``train2017/`` and ``val2017/`` images.

Images carry a class-dependent colour so that they are not all alike. torchvision checks the official
archives' md5 sums before reading CIFAR and STL files, which a generated fake cannot match:
``trust_torchvision_files`` replaces that check by a file-existence check for the test's duration;
everything else, the file names, pickles and binary layouts, is read by torchvision's own code.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.Generator, labels: np.ndarray, size: int, classes: int = 10) -> np.ndarray:
    """uint8 ``N × size × size × 3``: a noisy per-class colour with a brighter square at a random place."""
    n = len(labels)
    hues = rng.integers(0, 256, size=(classes, 3))
    img = np.clip(hues[labels][:, None, None, :] + rng.normal(0, 40, size=(n, size, size, 3)), 0, 255)
    for i in range(n):
        s = size // 3
        y, x = rng.integers(0, size - s, size=2)
        img[i, y : y + s, x : x + s] = 255 - img[i, y : y + s, x : x + s]
    return img.astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 40, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with 5 train batches of ``per_batch`` images and a test batch."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = n_test if name == "test_batch" else per_batch
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        hwc = _images(rng, labels, 32)
        data = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # CIFAR rows: 1024 R, 1024 G, 1024 B
        with open(out / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": labels.tolist(), "data": data}, fh)
    with open(out / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, fh)
    return Path(root)


def write_stl10(root: Path, n_train: int = 60, n_unlabeled: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """``root/stl10_binary/`` in STL-10's raw binary layout (96-px images, column-major, labels 1..10)."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "stl10_binary"
    out.mkdir(parents=True, exist_ok=True)

    def write_x(name: str, labels: np.ndarray) -> None:
        hwc = _images(rng, labels, 96)
        # STL-10 stores each image as 3 x 96 x 96 with the two spatial axes swapped (column-major)
        hwc.transpose(0, 3, 2, 1).astype(np.uint8).tofile(out / name)

    for prefix, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_x(f"{prefix}_X.bin", labels)
        (labels + 1).astype(np.uint8).tofile(out / f"{prefix}_y.bin")
    write_x("unlabeled_X.bin", rng.integers(0, 10, size=n_unlabeled))
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (out / "class_names.txt").write_text("\n".join(names) + "\n")
    return Path(root)


def write_imagenet(
    root: Path,
    classes: int = 4,
    train_per_class: int = 12,
    val_per_class: int = 4,
    seed: int = 0,
    wnids: list[str] | None = None,
    sizes: tuple[int, int] = (40, 73),
) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``, images ``sizes`` px on a side (varied).

    ``wnids`` names the class folders (default: ``classes`` made-up ids).
    """
    rng = np.random.default_rng(seed)
    wnids = list(wnids) if wnids is not None else [f"n{1440764 + 17 * i:08d}" for i in range(classes)]
    classes = len(wnids)
    for split, per in (("train", train_per_class), ("val", val_per_class)):
        for ci, wnid in enumerate(wnids):
            d = Path(root) / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per):
                size = int(rng.integers(*sizes))
                img = _images(rng, np.array([ci]), size, classes)[0]
                name = f"{wnid}_{k}.JPEG" if split == "train" else f"ILSVRC2012_val_{ci * per + k:08d}.JPEG"
                Image.fromarray(img).save(d / name, format="JPEG", quality=90)
    return Path(root)


def write_coco(root: Path, n_train: int = 6, n_val: int = 3, size: int = 96, seed: int = 0) -> Path:
    """COCO 2017 layout: ``annotations/instances_{split}2017.json`` and ``{split}2017/*.jpg``, 3 categories."""
    rng = np.random.default_rng(seed)
    cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
        {"id": 18, "name": "dog", "supercategory": "animal"},
    ]
    (Path(root) / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir = Path(root) / f"{split}2017"
        img_dir.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            image_id = 1000 * (split == "val") + i + 1
            canvas = rng.integers(90, 120, size=(size, size, 3), dtype=np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                c = cats[int(rng.integers(0, len(cats)))]
                w, h = (int(v) for v in rng.integers(size // 6, size // 2, size=2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                canvas[y : y + h, x : x + w] = (40 * (c["id"] % 6), 255 - 10 * c["id"], 12 * c["id"])
                anns.append({"id": ann_id, "image_id": image_id, "category_id": c["id"], "bbox": [x, y, w, h],
                             "area": w * h, "iscrowd": 0})  # fmt: skip
                ann_id += 1
            file_name = f"{image_id:012d}.jpg"
            Image.fromarray(canvas).save(img_dir / file_name, format="JPEG", quality=92)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        data = {"info": {"description": "fake COCO"}, "licenses": [], "images": images, "annotations": anns,
                "categories": cats}  # fmt: skip
        (Path(root) / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return Path(root)


def trust_torchvision_files(monkeypatch) -> None:  # noqa: ANN001 - pytest's MonkeyPatch
    """Replace torchvision's md5 check of the official CIFAR/STL archives by a check that the file exists."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.stl10 as stl10

    def exists(fpath: str, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(stl10, "check_integrity", exists)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """One IDX file (unsigned bytes): magic ``00 00 08 <ndim>``, big-endian int32 dimensions, the payload."""
    import gzip

    arr = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.tobytes()
    path = Path(f"{path}.gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def write_mnist_idx(folder: Path, n_train: int = 60, n_test: int = 20, *, gz: bool = True, seed: int = 0) -> Path:
    """The four official files (``train-``/``t10k-`` ``images-idx3``/``labels-idx1-ubyte``) in ``folder``.

    Image ``i`` of class ``c`` is dark with a bright bar at row ``2 c + 3``, so classes differ. Labels cycle
    over 0-9 in a shuffled order.
    """
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 3, 4:24] = 230
        write_idx(Path(folder) / f"{part}-images-idx3-ubyte", images, gz=gz)
        write_idx(Path(folder) / f"{part}-labels-idx1-ubyte", labels, gz=gz)
    return Path(folder)
