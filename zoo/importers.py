"""Import a ResNet backbone that another library trained, as our artifact (``byol-bench import``).

A checkpoint is read in three explicit steps, each of which can only fail loudly:

1. **Load it safely** (:func:`read_checkpoint`). Torch files go through ``torch.load(weights_only=True)``;
   a file that needs code to unpickle (a Lightning ``hyper_parameters`` object, an ``argparse.Namespace``)
   is refused with the reason and the one-line fix (re-save only the state dict where you trust the file).
   A plain pickle (detectron2 ``.pkl``) goes through :class:`RestrictedUnpickler`, which only rebuilds
   dicts, lists and numpy arrays. ``.safetensors`` files need no unpickling at all.
2. **Map the keys** with one :class:`Layout`: where the state dict sits in the checkpoint (``containers``),
   the prefix of the backbone keys, how a name after the prefix becomes torchvision's, and which other
   key prefixes are heads (projector, predictor, momentum copies, queues, online classifiers) dropped
   *because the layout names them*. Any other key is an error that lists it, and so is every backbone
   key that is missing or has another shape than ``--arch`` expects. ``--layout auto`` tries every layout
   and takes the one that fits; none or several fitting is an error that says so.
3. **Write the artifact** with :func:`zoo.artifact.save_artifact` (atomic), recording the source file's
   path, size and sha256, the layout, the container, and what was dropped, in ``meta.extra["source"]``.

Where each layout's names come from (read, not copied): solo-learn ``solo/methods/base.py`` (``backbone``,
``momentum_backbone``, ``classifier``; CIFAR stem ``Conv2d(3, 64, 3, 1, padding=2)``), lightly
``benchmarks/imagenet/resnet50/byol.py`` and ``examples/pytorch/byol.py`` (``backbone`` as a torchvision
ResNet or ``nn.Sequential(*list(resnet.children())[:-1])``), MoCo v2 ``moco/builder.py`` / MoCo v3
``main_lincls.py`` (``module.encoder_q`` / ``module.base_encoder``, ``fc`` is the MLP head), mmselfsup
``tools/model_converters/extract_backbone_weights.py`` + mmcls ``ResNet`` (``conv1``/``bn1``/``layerN``/
``downsample.0|1``: torchvision's names for the plain ``ResNet``), VISSL ``extra_scripts/
convert_vissl_to_torchvision.py`` (``classy_state_dict.base_model.model.trunk._feature_blocks``), and our
own :mod:`zoo.detectron2_format` for detectron2.
"""

from __future__ import annotations

import functools
import os
import pickle
import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.artifact import META, ArtifactMeta, load_artifact, save_artifact
from zoo.backbones import build_backbone, get_spec
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD
from zoo.detectron2_format import detectron2_to_torchvision_key, torchvision_to_detectron2_key
from zoo.io import sha256_file

__all__ = [
    "LAYOUTS",
    "Layout",
    "Mapped",
    "CheckpointImportError",
    "UnsafeCheckpointError",
    "KeyMismatchError",
    "UnsupportedCheckpointError",
    "RestrictedUnpickler",
    "read_checkpoint",
    "prefix_layout",
    "map_checkpoint",
    "detect_layout",
    "import_checkpoint",
]

_LIST_AT_MOST = 40  # keys named in one error message; the exception holds them all


class CheckpointImportError(ValueError):
    """A checkpoint that cannot be imported; the message says why and, where there is one, the fix."""


class UnsafeCheckpointError(CheckpointImportError):
    """Loading the file would run code from it (a pickled global outside the allowed set)."""


class UnsupportedCheckpointError(CheckpointImportError):
    """The keys fit, but the network that produced them is not one of our backbones (features would differ)."""


class KeyMismatchError(CheckpointImportError):
    """Keys outside the layout's rules, backbone keys missing, or shapes that do not fit ``--arch``."""

    def __init__(
        self,
        message: str,
        unknown: list[str] | None = None,
        missing: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.unknown = unknown or []
        self.missing = missing or []
        self.mismatched = mismatched or []


# ----------------------------------------------------------------------------------------------------
# Safe loading
# ----------------------------------------------------------------------------------------------------


def _numpy_multiarray() -> Any:
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _numpy_frombuffer() -> Any:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer
    return _frombuffer


# (module, name) a pickle may name -> the object it gets. Nothing here runs code chosen by the file:
# array/dtype/scalar reconstruction (numpy 1 and 2 module paths), bytes from a Python-2 ``str``
# (``_codecs.encode``, how protocol-2 pickles store raw array data) and OrderedDict.
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    **{(m, "_reconstruct"): lambda: _numpy_multiarray()._reconstruct for m in _MULTIARRAY},
    **{(m, "scalar"): lambda: _numpy_multiarray().scalar for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _numpy_frombuffer for m in _NUMERIC},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("_codecs").encode,
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader for weight files that refuses every global outside a short allow-list.

    ``pickle.load`` imports and calls whatever callable the file names (``os.system``, ``eval``, any
    class's constructor), so loading an untrusted pickle is running untrusted code. Weight files such as
    detectron2's ``.pkl`` only need dicts, lists, strings, numbers and numpy arrays, and the only globals
    those need are numpy's array, dtype and scalar reconstructors (plus ``_codecs.encode`` for Python-2
    pickles and ``collections.OrderedDict``); :meth:`find_class` hands out exactly those and raises
    :class:`UnsafeCheckpointError` naming anything else, before it is imported. Object arrays are
    refused afterwards by :func:`_as_tensor`, so no element can smuggle a Python object through.
    """

    def find_class(self, module: str, name: str) -> Any:
        getter = _ALLOWED_GLOBALS.get((module, name))
        if getter is None:
            raise UnsafeCheckpointError(
                f"the pickle names the global '{module}.{name}', and loading it would run code from the file; "
                "only numpy arrays and plain containers are read from a .pkl"
            )
        return getter()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            "the pickle refers to persistent objects (a legacy torch.save file?); re-save it with torch.save "
            "of a plain state dict"
        )


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a pre-1.6 (non-zip) torch.save file


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < path.stat().st_size and head[8:9] == b"{"


def _refusal_for_torch(path: Path, exc: Exception) -> UnsafeCheckpointError:
    reason = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
    return UnsafeCheckpointError(
        f"refusing {path}: it holds pickled Python objects besides tensors and plain containers, and "
        f"unpickling them would run code from the file{f' ({reason})' if reason else ''}. Lightning "
        "checkpoints often carry such objects in 'hyper_parameters'. Fix: where you trust the file, re-save "
        "only the weights and import that, e.g. python -c \"import torch; c = torch.load('IN', "
        "weights_only=False); torch.save(c['state_dict'], 'OUT.pt')\""
    )


def read_checkpoint(path: str | os.PathLike) -> tuple[Any, str]:
    """Load ``path`` without running code from it; return ``(object, format)``.

    ``format`` is ``"torch"`` (``torch.load(weights_only=True)``, zip or legacy file), ``"safetensors"``
    or ``"pickle"`` (a plain pickle read by :class:`RestrictedUnpickler`, e.g. a detectron2 ``.pkl``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path)), "safetensors"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            if fh.read(1) != b"\x80":
                raise CheckpointImportError(f"{path}: not a torch, pickle or safetensors file")
            fh.seek(0)
            try:
                first = RestrictedUnpickler(fh, encoding="latin1").load()
            except UnsafeCheckpointError as exc:
                raise UnsafeCheckpointError(f"refusing {path}: {exc}") from None
            except Exception as exc:  # truncated or corrupt pickle
                raise CheckpointImportError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
        if first != _TORCH_LEGACY_MAGIC:
            return first, "pickle"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal_for_torch(path, exc) from None
    except RuntimeError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise _refusal_for_torch(path, exc) from None
        raise CheckpointImportError(f"{path}: unreadable torch file ({exc})") from exc
    return obj, "torch"


# ----------------------------------------------------------------------------------------------------
# Layouts: explicit key rules
# ----------------------------------------------------------------------------------------------------

Refusal = Callable[[Mapping[str, Any], bool], "str | None"]


def _same(name: str) -> str | None:
    return name


@dataclass(frozen=True)
class Layout:
    """How one library lays out a ResNet backbone in its checkpoints.

    - ``containers``: key paths to the state dict inside the checkpoint, tried in order (``()`` = the
      checkpoint itself); the first that exists and is a dict is used.
    - ``prefix``: backbone keys start with it; ``rename`` turns the rest into a torchvision name (``None``:
      not a backbone key, reported as unknown).
    - ``heads``: key prefixes dropped on purpose (a key equal to one or under ``one + "."``).
    - ``drop_outside_prefix``: every key outside ``prefix`` is dropped (``--prefix``: counted per first
      name component and recorded, never silent).
    - ``fills_bn_counters``: the format never stores BN ``num_batches_tracked`` (detectron2); they are set
      to 0, which eval-mode features never read.
    - ``refuse(container, keys_fit)``: a message when the checkpoint is this library's but its network
      differs from our backbones in a way the keys cannot show, else ``None``.
    """

    name: str
    description: str
    containers: tuple[tuple[str, ...], ...]
    prefix: str
    heads: tuple[str, ...] = ()
    rename: Callable[[str], str | None] = _same
    drop_outside_prefix: bool = False
    fills_bn_counters: bool = False
    refuse: Refusal | None = None

    def head_of(self, key: str) -> str | None:
        """The head rule that drops ``key``, or ``None``."""
        for head in self.heads:
            if key == head or key.startswith(head + "."):
                return head
        if self.drop_outside_prefix and not key.startswith(self.prefix):
            return key.split(".", 1)[0]
        return None


def _solo_learn_refusal(container: Mapping[str, Any], keys_fit: bool) -> str | None:
    conv1 = container.get("backbone.conv1.weight")
    if keys_fit and conv1 is not None and tuple(conv1.shape[-2:]) == (3, 3):
        return (
            "solo-learn's CIFAR stem is Conv2d(3, 64, kernel_size=3, stride=1, padding=2) without max-pool "
            "(solo/methods/base.py); our resnet18-small pads by 1, so the same weights would give other "
            "features. No registered backbone matches it; not imported."
        )
    return None


def _lightly_refusal(container: Mapping[str, Any], keys_fit: bool) -> str | None:
    if any(k.startswith("backbone.") and (".shortcut." in k or k.startswith("backbone.linear.")) for k in container):
        return (
            "this is lightly's own ResNet (lightly.models.ResNetGenerator, as in its CIFAR-10 benchmark: "
            "'shortcut' blocks), not torchvision's; as nn.Sequential(*children()[:-1]) it has no ReLU after the "
            "stem BN, so no registered backbone computes the same features. Not imported."
        )
    return None


# lightly's nn.Sequential(*list(torchvision_resnet.children())[:-1]): index -> torchvision child. 2 relu,
# 3 maxpool and 8 avgpool hold no tensors, so a key under them is unknown.
_SEQUENTIAL_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def _lightly_name(rest: str) -> str | None:
    first, _, tail = rest.partition(".")
    if not first.isdigit():
        return rest
    child = _SEQUENTIAL_CHILDREN.get(first)
    return f"{child}.{tail}" if child and tail else None


def _detectron2_name(key: str) -> str | None:
    """Only names our converter writes: the inverse must convert back to ``key`` itself."""
    name = detectron2_to_torchvision_key(key)
    return name if torchvision_to_detectron2_key(name) == key else None


_SOLO_LEARN_HEADS = (
    "projector", "predictor", "classifier", "momentum_backbone", "momentum_projector", "momentum_classifier",
    "head", "momentum_head", "prototypes", "queue", "queue_ptr", "queue_y", "queue_index",
    "local_memory_index", "local_memory_embeddings", "dino_loss_func",
)  # fmt: skip
_LIGHTLY_HEADS = (
    "projection_head", "prediction_head", "backbone_momentum", "projection_head_momentum",
    "teacher_backbone", "teacher_projection_head", "online_classifier", "prototypes", "criterion",
    "memory_bank", "queues",
)  # fmt: skip

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "torchvision",
            "a torchvision ResNet state dict (top level, or under 'state_dict' or 'model'); fc dropped",
            (("state_dict",), ("model",), ()),
            "",
            heads=("fc",),
        ),
        Layout(
            "solo-learn",
            "Lightning .ckpt: state_dict -> backbone.*; projector/predictor/momentum_*/classifier/queues dropped",
            (("state_dict",),),
            "backbone.",
            heads=_SOLO_LEARN_HEADS,
            refuse=_solo_learn_refusal,
        ),
        Layout(
            "lightly",
            "[state_dict ->] backbone.* as a torchvision ResNet or nn.Sequential of its children "
            "(0 conv1, 1 bn1, 4-7 layer1-4); projection/prediction heads, momentum/teacher copies dropped",
            (("state_dict",), ()),
            "backbone.",
            heads=_LIGHTLY_HEADS,
            rename=_lightly_name,
            refuse=_lightly_refusal,
        ),
        Layout(
            "moco-v2",
            "state_dict -> module.encoder_q.*; encoder_q.fc (MLP head), encoder_k, queue dropped",
            (("state_dict",),),
            "module.encoder_q.",
            heads=("module.encoder_q.fc", "module.encoder_k", "module.queue", "module.queue_ptr"),
        ),
        Layout(
            "moco-v3",
            "state_dict -> module.base_encoder.*; base_encoder.fc (projector), momentum_encoder, predictor dropped",
            (("state_dict",),),
            "module.base_encoder.",
            heads=("module.base_encoder.fc", "module.momentum_encoder", "module.predictor"),
        ),
        Layout(
            "mmselfsup",
            "state_dict -> backbone.* (mmcls ResNet names = torchvision's); neck, head, target_net, online_net "
            "(0.x duplicate of backbone) dropped",
            (("state_dict",),),
            "backbone.",
            heads=("neck", "head", "target_net", "online_net"),
        ),
        Layout(
            "vissl",
            "classy_state_dict.base_model.model.trunk (or model_state_dict, or top level) -> _feature_blocks.*; "
            "the heads stored beside the trunk are not read",
            (("classy_state_dict", "base_model", "model", "trunk"), ("model_state_dict",), ()),
            "_feature_blocks.",
        ),
        Layout(
            "detectron2",
            "detectron2 .pkl: model -> stem.* / res2-5.* numpy arrays (inverse of zoo.detectron2_format); "
            "BN num_batches_tracked set to 0",
            (("model",),),
            "",
            rename=_detectron2_name,
            fills_bn_counters=True,
        ),
    )
}


def prefix_layout(prefix: str) -> Layout:
    """The ``--prefix`` layout: torchvision names under ``prefix``; ``<prefix>fc`` and every other key dropped."""
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    return Layout(
        "prefix",
        f"torchvision names under '{prefix}' (from --prefix); everything else dropped and counted",
        (("state_dict",), ("model",), ("model_state_dict",), ()),
        prefix,
        heads=(prefix + "fc",),
        drop_outside_prefix=True,
    )


# ----------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------


@dataclass
class Mapped:
    """A checkpoint's backbone, renamed to torchvision keys, with a record of what the layout did."""

    layout: Layout
    state: dict[str, torch.Tensor]
    container: str
    dropped: dict[str, int] = field(default_factory=dict)  # head rule -> keys dropped by it
    filled: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "layout": self.layout.name,
            "container": self.container,
            "prefix": self.layout.prefix,
            "keys_imported": len(self.state) - len(self.filled),
            "dropped": dict(sorted(self.dropped.items())),
            "filled": self.filled,
            "source_dtypes": self.dtypes,
        }


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f", … and {len(keys) - _LIST_AT_MOST} more" if len(keys) > _LIST_AT_MOST else "")


def _find_container(ckpt: Any, layout: Layout) -> tuple[Mapping[str, Any], str]:
    for path in layout.containers:
        node = ckpt
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            return node, "/".join(path) or "(top level)"
    wanted = " or ".join("/".join(p) or "(top level)" for p in layout.containers)
    raise KeyMismatchError(f"layout '{layout.name}': no state dict at {wanted}")


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return torch.from_numpy(np.array(value, copy=True))
    return None


@functools.cache
def _expected(arch: str) -> dict[str, torch.Tensor]:
    """``arch``'s state dict as meta tensors: names, shapes and dtypes without initialising any weights."""
    with torch.device("meta"):
        return build_backbone(arch).state_dict()


def map_checkpoint(ckpt: Any, layout: Layout, arch: str) -> Mapped:
    """Apply ``layout`` to a loaded checkpoint for backbone ``arch``; raise unless every key is accounted for.

    Raises :class:`KeyMismatchError` listing unknown keys (neither a backbone key nor dropped by a head
    rule), missing backbone keys and shape mismatches, or :class:`UnsupportedCheckpointError` from the
    layout's ``refuse`` rule.
    """
    expected = _expected(arch)
    container, where = _find_container(ckpt, layout)
    state: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    unknown: list[str] = []
    for key, value in container.items():
        key = str(key)
        head = layout.head_of(key)
        if head is not None:
            dropped[head] += 1
            continue
        name = layout.rename(key[len(layout.prefix) :]) if key.startswith(layout.prefix) else None
        tensor = _as_tensor(value)
        if name is None or name not in expected or tensor is None:
            unknown.append(key)
            continue
        if name in state:
            raise KeyMismatchError(f"layout '{layout.name}': '{source_of[name]}' and '{key}' both map to '{name}'")
        state[name], source_of[name] = tensor, key
    missing = [
        k for k in expected if k not in state and not (layout.fills_bn_counters and k.endswith(".num_batches_tracked"))
    ]
    keys_fit = not unknown and not missing
    refusal = layout.refuse(container, keys_fit) if layout.refuse else None
    if refusal:
        raise UnsupportedCheckpointError(f"layout '{layout.name}': {refusal}")
    if not keys_fit:
        parts = [f"{len(unknown)} unknown key(s): {_listing(unknown)}"] if unknown else []
        parts += [f"{len(missing)} missing backbone key(s) of '{arch}': {_listing(missing)}"] if missing else []
        raise KeyMismatchError(
            f"layout '{layout.name}' (state dict at {where}) does not fit: " + "; ".join(parts),
            unknown=unknown,
            missing=missing,
        )
    mismatched = [
        f"{source_of[k]} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if mismatched:
        raise KeyMismatchError(
            f"layout '{layout.name}': {len(mismatched)} tensor(s) do not fit '{arch}' (wrong --arch?): "
            + _listing(mismatched),
            mismatched=mismatched,
        )
    filled = []
    for k in expected:
        if k not in state:  # only BN counters get here (missing is empty)
            state[k] = torch.zeros_like(expected[k], device="cpu")
            filled.append(k)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for k, v in state.items() if k not in filled})
    return Mapped(layout, state, where, dict(dropped), filled, dtypes)


def detect_layout(ckpt: Any, arch: str) -> Mapped:
    """Try every layout in :data:`LAYOUTS`; return the only one that fits, else raise saying why."""
    fits: list[Mapped] = []
    refused: list[tuple[str, UnsupportedCheckpointError]] = []
    reasons: list[str] = []
    for layout in LAYOUTS.values():
        try:
            fits.append(map_checkpoint(ckpt, layout, arch))
        except UnsupportedCheckpointError as exc:
            refused.append((layout.name, exc))
        except KeyMismatchError as exc:
            reasons.append(f"  {exc}")
    if len(fits) == 1 and not refused:
        return fits[0]
    if not fits and len(refused) == 1:
        raise refused[0][1]
    if fits or refused:
        names = [m.layout.name for m in fits] + [f"{name} (refused)" for name, _ in refused]
        raise CheckpointImportError(
            f"--layout auto: the checkpoint fits several layouts ({', '.join(names)}); pass --layout to choose"
        )
    raise KeyMismatchError(
        "--layout auto: no layout fits this checkpoint (use --layout NAME to see one layout's full error, or "
        "--prefix for a layout we do not know):\n" + "\n".join(reasons)
    )


# ----------------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------------


def import_checkpoint(
    path: str | os.PathLike,
    arch: str,
    out: str | os.PathLike,
    layout: str = "auto",
    prefix: str | None = None,
    input_size: int | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    overwrite: bool = False,
) -> Path:
    """Turn the checkpoint at ``path`` into an artifact at ``out``; return ``out``.

    ``layout`` is a key of :data:`LAYOUTS` or ``"auto"``; ``prefix`` (only with ``layout="auto"``) selects
    :func:`prefix_layout` instead. ``input_size`` defaults to 32 for small-stem backbones, 224 otherwise.
    The written artifact is loaded back and compared tensor by tensor before this returns.
    """
    spec = get_spec(arch)
    src = Path(path).resolve()
    out = Path(out)
    if prefix is not None and layout != "auto":
        raise CheckpointImportError("--prefix defines its own layout; do not combine it with --layout")
    if layout != "auto" and layout not in LAYOUTS:
        raise CheckpointImportError(f"unknown layout '{layout}' (known: auto, {', '.join(LAYOUTS)})")
    if out.exists() and not (overwrite and (out / META).is_file()):
        raise CheckpointImportError(
            f"{out} exists; pass --force to replace an artifact there" if (out / META).is_file() else f"{out} exists"
        )
    ckpt, fmt = read_checkpoint(src)
    if prefix is not None:
        mapped = map_checkpoint(ckpt, prefix_layout(prefix), arch)
    elif layout == "auto":
        mapped = detect_layout(ckpt, arch)
    else:
        mapped = map_checkpoint(ckpt, LAYOUTS[layout], arch)
    with torch.device("meta"):  # no initialisation: every tensor comes from the checkpoint
        model = build_backbone(arch)
    expected = _expected(arch)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.state.items()}, strict=True, assign=True)
    size = input_size if input_size is not None else (32 if spec.stem == "small" else 224)
    source = {"path": str(src), "bytes": src.stat().st_size, "sha256": sha256_file(src), "format": fmt}
    meta = ArtifactMeta(
        architecture=arch,
        feature_dim=spec.feature_dim,
        input_size=size,
        method="imported",
        mean=tuple(mean),
        std=tuple(std),
        config={"arch": arch, "layout": layout, "prefix": prefix, "input_size": size},
        extra={"source": {**source, **mapped.record()}},
    )
    save_artifact(out, model, meta)
    written = load_artifact(out).model.state_dict()
    for k, v in model.state_dict().items():
        if not torch.equal(written[k], v):  # pragma: no cover - would be a bug in save/load
            raise CheckpointImportError(f"{out}: '{k}' changed on the way to disk")
    return out


def describe_layouts() -> str:
    """One line per layout, for ``--help``."""
    return "\n".join(f"  {name:12s} {layout.description}" for name, layout in LAYOUTS.items())
