"""The dataset registry, split types and on-disk cache helpers shared by every dataset family.

A registered builder is ``fn(split: str, opts: DatasetOptions) -> ClassificationSplit | DetectionSplit``.
Splits: every classification dataset has ``train`` / ``val`` / ``test``; ``val`` chooses hyper-parameters and
``test`` is only ever reported.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.io import atomic_replace_dir, atomic_write_with, default_cache_dir, make_temp_dir, stable_hash

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset is unknown, unavailable at the given path, or malformed. The message says what and where."""


@dataclass(frozen=True)
class DatasetOptions:
    """Options a dataset builder may use. ``root`` is required for user datasets."""

    root: str | None = None
    image_size: int | None = None  # None: the dataset's native size (32 for the digit sets)
    seed: int = 0  # generation seed of the embedded sets (not the split seed, which is fixed)
    cache_dir: str | None = None
    # procedural sets (shapes): split sizes; None = the set's default (shapes: 20,000 / 2,000 / 2,000)
    num_train: int | None = None
    num_val: int | None = None
    num_test: int | None = None
    # digits-det and shapes-det
    det_canvas: int = 128
    det_train_images: int = 600
    det_val_images: int = 150
    det_test_images: int = 0  # shapes-det only: a held-out test split (0: none; protocols are chosen on val)

    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir() / "data"


@dataclass
class ClassificationSplit:
    """One split of a labelled image dataset.

    ``images`` is uint8 ``N × H × W × 3`` when the data is in memory (embedded sets, CIFAR, STL); for an
    image folder it is ``None`` and ``paths`` lists the files. ``__getitem__`` returns ``(PIL.Image, int)``.
    """

    name: str
    split: str
    classes: list[str]
    targets: np.ndarray  # N, int64; -1 for unlabelled images
    images: np.ndarray | None = None  # N x H x W x 3 uint8
    paths: list[str] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    recipe: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        return bool(len(self.targets)) and bool((self.targets >= 0).all())

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        if self.images is not None:
            img = Image.fromarray(self.images[index])
        else:
            assert self.paths is not None
            with Image.open(self.paths[index]) as fh:
                img = fh.convert("RGB")
            if self.image_size is not None:
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        return img, int(self.targets[index])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8 N×H×W×3, int64 N)``; loads an image folder into memory (needs ``image_size``)."""
        if self.images is None:
            if self.image_size is None:
                raise DatasetError(f"{self.name}: pass image_size to load an image folder into memory")
            self.images = np.stack([np.asarray(self[i][0]) for i in range(len(self))])
        return self.images, self.targets

    def subset(self, indices: np.ndarray | list[int]) -> ClassificationSplit:
        """A new split holding only ``indices`` (used for low-shot draws)."""
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            targets=self.targets[idx],
            images=None if self.images is None else self.images[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            recipe={**self.recipe, "subset": stable_hash(idx.tolist())},
        )

    def describe(self) -> dict[str, Any]:
        """Identity of this split for records and cache keys."""
        return {"name": self.name, "split": self.split, "size": len(self), "recipe": self.recipe}


@dataclass
class DetectionSplit:
    """One split of a COCO-format detection dataset: an instances json and the folder its file names use."""

    name: str
    split: str
    json_path: Path
    image_dir: Path
    classes: list[str]
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "json": str(self.json_path), "recipe": self.recipe}


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    task: str  # "classification" | "detection"
    description: str
    builder: Callable[[str, DatasetOptions], Any]
    embedded: bool
    splits: tuple[str, ...] = SPLITS
    # a local dataset's conventional install folder (e.g. Debian's), used when no root is given and it exists
    default_root: Callable[[], str | None] | None = None


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str,
    *,
    task: str,
    description: str,
    embedded: bool,
    splits: tuple[str, ...] = SPLITS,
    default_root: Callable[[], str | None] | None = None,
) -> Callable:
    """Register ``builder(split, opts)`` under ``name``. Duplicate names are an error.

    ``default_root()`` returns the folder a local dataset is read from when no root is given (or None).
    """

    def deco(fn: Callable[[str, DatasetOptions], Any]) -> Callable[[str, DatasetOptions], Any]:
        if name in DATASETS:
            raise ValueError(f"dataset '{name}' is already registered")
        DATASETS[name] = DatasetEntry(name, task, description, fn, embedded, splits, default_root)
        return fn

    return deco


def load_dataset(
    name: str, split: str, opts: DatasetOptions | None = None, **kwargs: Any
) -> ClassificationSplit | DetectionSplit:
    """Build split ``split`` of dataset ``name``; ``kwargs`` are ``DatasetOptions`` fields."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(sorted(DATASETS))})")
    entry = DATASETS[name]
    if split not in entry.splits:
        raise DatasetError(f"dataset '{name}' has no split '{split}' (splits: {', '.join(entry.splits)})")
    opts = dataclasses.replace(opts or DatasetOptions(), **kwargs) if kwargs else (opts or DatasetOptions())
    if not entry.embedded and not opts.root and entry.default_root is not None:
        found = entry.default_root()
        opts = dataclasses.replace(opts, root=found) if found else opts
    if not entry.embedded and not opts.root:
        raise DatasetError(f"dataset '{name}' reads local files: pass root=PATH (--root) to where it lives")
    return entry.builder(split, opts)


def list_datasets(opts: DatasetOptions | None = None) -> list[dict[str, Any]]:
    """One row per dataset: name, task, description and split sizes (or why it is unavailable)."""
    rows = []
    for name, entry in sorted(DATASETS.items()):
        row: dict[str, Any] = {"name": name, "task": entry.task, "description": entry.description}
        has_default = entry.default_root is not None and entry.default_root() is not None
        if not entry.embedded and not (opts and opts.root) and not has_default:
            row.update(available=False, sizes="needs --root PATH")
        else:
            try:
                sizes: dict[str, Any] = {}
                for s in entry.splits:
                    if s == "test" and entry.task == "detection" and not (opts and opts.det_test_images):
                        sizes[s] = 0  # shapes-det's optional test split (det_test_images)
                        continue
                    ds = load_dataset(name, s, opts)
                    sizes[s] = len(ds) if isinstance(ds, ClassificationSplit) else _count_coco(ds.json_path)
                row.update(available=True, sizes=sizes)
            except (DatasetError, FileNotFoundError, OSError) as exc:
                row.update(available=False, sizes=str(exc))
        rows.append(row)
    return rows


def _count_coco(path: Path) -> int:
    return len(json.loads(Path(path).read_text())["images"])


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def split_indices(
    labels: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, np.ndarray]:
    """Stratified, deterministic train/val/test index partition (sorted indices per split)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        out["train"] += idx[:n_train].tolist()
        out["val"] += idx[n_train : n_train + n_val].tolist()
        out["test"] += idx[n_train + n_val :].tolist()
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in out.items()}


def _recipe_cache(cache_dir: Path | None, stem: str, recipe: dict[str, Any]) -> Path:
    """``<cache>/data/<stem>-<hash of recipe>.npz``: a changed recipe gets a new file, never a stale one."""
    return (cache_dir or default_cache_dir() / "data") / f"{stem}-{stable_hash(recipe)}.npz"


def _load_cached_npz(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays cached at ``path``; (re)generate and write atomically when absent or unreadable."""
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            pass  # half-written or corrupt: rebuild below
    arrays = make()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write_with(path, write)
    return arrays


def write_coco_json(out_dir: Path, split: str, description: str, version: int, coco: dict[str, list]) -> None:
    """``out_dir/annotations/instances_<split>.json`` from ``coco``'s images, annotations and categories."""
    data = {"info": {"description": description, "version": str(version)}, "licenses": [], **coco}
    ann_dir = out_dir / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / f"instances_{split}.json").write_text(json.dumps(data))


def embedded_detection_split(
    name: str, split: str, opts: DatasetOptions, version: int, make: Callable[[Path, DatasetOptions], None],
    classes: list[str],
) -> DetectionSplit:  # fmt: skip
    """One split of a generated COCO set cached at ``<cache>/<name>-<hash of its recipe>``.

    The recipe is the options that decide the canvases (size, image counts, seed) and the generator's
    ``version``. ``make(folder, opts)`` writes ``images/<split>/`` and ``annotations/instances_<split>.json``
    for every split into a temporary folder (umask-honouring); a ``COMPLETE`` marker is written last and the
    folder is renamed into place, so a half-built set is never read as complete and is rebuilt instead.
    """
    recipe = {
        "kind": name,
        "canvas": opts.det_canvas,
        "train_images": opts.det_train_images,
        "val_images": opts.det_val_images,
        **({"test_images": opts.det_test_images} if opts.det_test_images else {}),  # older caches keep their hash
        "seed": opts.seed,
        "version": version,
    }
    if split == "test" and not opts.det_test_images:
        raise DatasetError(
            f"dataset '{name}' has no test images unless the dataset option det_test_images is set (e.g. "
            f"dataset_options: {{det_test_images: 500}}); its default splits are train and val"
        )
    root = opts.cache_path() / f"{name}-{stable_hash(recipe)}"
    if not (root / "COMPLETE").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(f".{name}-", root.parent)
        try:
            make(tmp, opts)
            (tmp / "COMPLETE").write_text(json.dumps(recipe))
            atomic_replace_dir(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return DetectionSplit(
        name=name,
        split=split,
        json_path=root / "annotations" / f"instances_{split}.json",
        image_dir=root / "images" / split,
        classes=classes,
        recipe=recipe,
    )


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two COCO ``[x, y, w, h]`` boxes (the generated sets' overlap rule)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)
