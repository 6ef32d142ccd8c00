"""Dataset registry shared by pretraining and evaluation, one module per family.

- ``core``: the registry (``register_dataset`` / ``load_dataset`` / ``list_datasets``), split types, the
  stratified split rule and the recipe-keyed cache.
- ``shapes``: ``shapes`` and ``shapes-det``, procedural shapes with per-image factor labels — the default.
- ``digits``: ``digits``, ``digits-m`` and ``digits-det`` from scikit-learn's bundled data.
- ``idx``: ``fashion-mnist`` and ``mnist`` from their official IDX files (Debian's folder by default).
- ``user``: ``cifar10``, ``cifar100``, ``stl10``, ``imagefolder`` and ``coco`` from local files.

Embedded datasets need no download: they are generated deterministically from a seed and cached under
``$BYOL_BENCH_CACHE/data`` keyed by a hash of their recipe. Importing this package registers every family.
"""

from zoo.datasets import digits as _digits_family  # noqa: F401  (registers the digit sets)
from zoo.datasets import idx as _idx_family  # noqa: F401  (fashion-mnist, mnist)
from zoo.datasets import published as _published_family  # noqa: F401  (imagenet, stl10-unlabeled)
from zoo.datasets import shapes as _shapes_family  # noqa: F401  (registers shapes, shapes-det)
from zoo.datasets import user as _user_family  # noqa: F401  (registers the user datasets)
from zoo.datasets.core import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    ClassificationSplit,
    DatasetEntry,
    DatasetError,
    DatasetOptions,
    DetectionSplit,
    list_datasets,
    load_dataset,
    register_dataset,
    split_indices,
)
from zoo.datasets.digits import _digit_m_backgrounds, _photos, digit_arrays, digit_m_layers, digit_m_nuisance
from zoo.datasets.shapes import SHAPE_CLASSES, shape_factors
from zoo.datasets.user import validate_coco_json

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "DatasetOptions",
    "ClassificationSplit",
    "DetectionSplit",
    "DatasetError",
    "register_dataset",
    "load_dataset",
    "list_datasets",
    "digit_arrays",
    "digit_m_layers",
    "digit_m_nuisance",
    "shape_factors",
    "SHAPE_CLASSES",
    "split_indices",
    "validate_coco_json",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "_digit_m_backgrounds",
    "_photos",
]
