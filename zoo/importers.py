"""Import a ResNet backbone that another library trained, as our artifact (``byol-bench import``).

A checkpoint is read in three explicit steps, each of which can only fail loudly:

1. **Load it safely** (:func:`read_checkpoint`). Torch files go through ``torch.load(weights_only=True)``,
   and only on torch >= 2.10 (older versions have public holes in it; :data:`_TORCH_LOAD_SAFE_FROM`).
   A torch (zip) file that also pickles Python objects besides its weights (a Lightning
   ``hyper_parameters`` object, mmengine's ``message_hub`` of ``HistoryBuffer`` objects) is read with each
   global the file names (listed beforehand, without loading, by
   ``torch.serialization.get_unsafe_globals_in_checkpoint``) bound to an inert :class:`Foreign` stand-in:
   torch's weights-only unpickler still runs, nothing from the file is imported or called, and the state
   dict a layout reads must hold tensors only (a stand-in there is an error naming it). A legacy (pre-1.6,
   non-zip) torch file with such objects, or a file that *is* a pickled module, is refused with a one-line
   re-save that writes a file this importer reads (tested per layout). A plain pickle (detectron2
   ``.pkl``) goes through :class:`RestrictedUnpickler`, which only rebuilds dicts, lists and numpy
   arrays, the arrays by our own code from a whitelisted number dtype, an int shape and exactly that
   many bytes (numpy never sees the file's dtype or array state). ``.safetensors`` files need no
   unpickling at all.
2. **Map the keys** with one :class:`Layout`: where the state dict sits in the checkpoint (``containers``),
   the prefix of the backbone keys, how a name after the prefix becomes torchvision's, and which other
   key prefixes are heads (projector, predictor, momentum copies, queues, online classifiers) dropped
   *because the layout names them*. Any other key is an error that lists it, and so is every backbone
   key that is missing or has another shape than ``--arch`` expects. ``--layout auto`` tries every layout
   and takes the one that fits; none or several fitting is an error that says so. ``--prefix`` (a layout
   we do not know) is refused for a checkpoint that a known layout recognises. Every path ends in the
   same checks (:func:`map_checkpoint`): keys, shapes, the layout's refusals and the **stem check** — a
   3×3 stem's padding cannot be seen in the tensors, so it comes from the layout where the library fixes
   it (solo-learn: 2, refused) or from ``--stem-padding``.
3. **Write the artifact** with :func:`zoo.artifact.save_artifact` (atomic), recording the source file's
   path, size and sha256, the layout, the container, and every dropped key by name, in
   ``meta.extra["source"]``. ``input_size`` comes from the checkpoint where it records one (mmengine's
   ``meta.cfg``) or from ``--input-size``; otherwise the import is refused (see :func:`import_checkpoint`).

Where each layout's names come from (read, not copied): solo-learn ``solo/methods/base.py`` (``backbone``,
``momentum_backbone``, ``classifier``; CIFAR stem ``Conv2d(3, 64, 3, 1, padding=2)``), lightly
``benchmarks/imagenet/resnet50/byol.py`` and ``examples/pytorch/byol.py`` (``backbone`` as a torchvision
ResNet or ``nn.Sequential(*list(resnet.children())[:-1])``), MoCo v2 ``moco/builder.py`` / MoCo v3
``main_lincls.py`` (``module.encoder_q`` / ``module.base_encoder``, ``fc`` is the MLP head), mmselfsup
``tools/model_converters/extract_backbone_weights.py`` + mmcls ``ResNet`` (``conv1``/``bn1``/``layerN``/
``downsample.0|1``: torchvision's names for the plain ``ResNet``), mmengine ``runner/runner.py``
(``save_checkpoint``: ``meta``, ``state_dict``, ``message_hub``), VISSL ``extra_scripts/
convert_vissl_to_torchvision.py`` (``classy_state_dict.base_model.model.trunk._feature_blocks``), and for
detectron2 ``.pkl`` files our own :mod:`zoo.detectron2_format` plus detectron2's
``tools/convert-torchvision-to-d2.py`` and MoCo's ``detection/convert-pretrain-to-detectron2.py`` (exact
lines at :data:`LAYOUTS`).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import pickle
import re
import shlex
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from zoo.artifact import HEADS, META, WEIGHTS, ArtifactMeta, load_artifact, save_artifact
from zoo.backbones import build_backbone, get_spec
from zoo.datasets import IMAGENET_MEAN, IMAGENET_STD
from zoo.detectron2_format import detectron2_to_torchvision_key, torchvision_to_detectron2_key
from zoo.io import sha256_file

__all__ = [
    "LAYOUTS",
    "Layout",
    "Mapped",
    "Foreign",
    "CheckpointImportError",
    "UnsafeCheckpointError",
    "KeyMismatchError",
    "UnsupportedCheckpointError",
    "RestrictedUnpickler",
    "read_checkpoint",
    "prefix_layout",
    "map_checkpoint",
    "detect_layout",
    "recognised_layouts",
    "import_checkpoint",
]

_LIST_AT_MOST = 40  # keys named in one error message; the exception (and meta.json) holds them all


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


# A .pkl never gets to construct a numpy object. numpy's own ``dtype.__setstate__`` and
# ``ndarray.__setstate__`` trust their arguments (a dtype state can declare an object field without the
# object flag, and copying such an array dereferences bytes from the file as pointers: a crash or worse),
# so the globals numpy's pickles name are bound to inert recorders (:class:`_Record`), and after loading
# each array is rebuilt by :func:`_rebuild_arrays` from a dtype on this list, a shape of ints and a payload
# of exactly the right length (``np.frombuffer`` + copy). Anything else is an error naming the file.
_ARRAY_KINDS = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")  # as numpy's pickles spell them
_ONE_BYTE_KINDS = ("i1", "u1", "b1")
_WEIGHT_DTYPES = frozenset(np.dtype(order + kind) for kind in _ARRAY_KINDS for order in "<>")
_PICKLE_NESTING = 100  # a weights pickle is a dict of arrays, perhaps in one or two containers


class _Record:
    """An inert stand-in for a numpy object that a .pkl names: its arguments and state are kept, nothing runs."""

    args: tuple[Any, ...] = ()  # also what a record made by NEWOBJ (``__new__`` without ``__init__``) has
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _NdarrayName(_Record):
    """``numpy.ndarray`` in a .pkl (the class ``_reconstruct`` is asked to make)."""


class _DtypeRecord(_Record):
    """``numpy.dtype(kind, align, copy)``, BUILD state ``(version, byteorder, subarray, names, fields, ...)``."""

    def dtype(self) -> np.dtype:
        kind = self.args[0] if self.args else None
        kind = kind.decode("latin1") if isinstance(kind, bytes) else kind
        if kind not in _ARRAY_KINDS:
            raise ValueError(f"an array of dtype {kind!r:.40}: weights are one of {', '.join(_ARRAY_KINDS)}")
        order = "="  # numpy.dtype(kind) without a state: native
        state = self.state
        if state is not None:
            if not (
                isinstance(state, tuple)
                and 5 <= len(state) <= 9
                and state[0] in (1, 2, 3, 4)
                and all(x is None for x in state[2:5])
            ):
                raise ValueError(f"a dtype {kind!r} whose state is not a plain number type's: {state!r:.200}")
            order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
            if order not in ("<", ">", "=") and not (order == "|" and kind in _ONE_BYTE_KINDS):
                raise ValueError(f"a dtype {kind!r} with byte order {order!r:.20}")
        return np.dtype(order + kind)


class _ArrayRecord(_Record):
    """``_reconstruct(numpy.ndarray, (0,), b'b')`` with its BUILD state ``(1, shape, dtype, is_fortran, data)``."""


class _FrombufferRecord(_Record):
    """``numpy._core.numeric._frombuffer(data, dtype, shape, order)`` (pickle protocol 5)."""


class _ScalarRecord(_Record):
    """``numpy._core.multiarray.scalar(dtype, data)``: a numpy scalar."""


def _build_array(dtype: Any, shape: Any, data: Any, fortran: Any) -> np.ndarray:
    if not isinstance(dtype, _DtypeRecord):
        raise ValueError(f"an array whose dtype is a {type(dtype).__name__}")
    dt = dtype.dtype()
    if not (
        isinstance(shape, tuple)
        and len(shape) <= 32
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise ValueError(f"an array whose shape {shape!r:.100} is not a tuple of at most 32 non-negative ints")
    if isinstance(data, str):  # a Python-2 str, read with encoding="latin1"
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"an array whose data is a {type(data).__name__}, not bytes")
    count = 1
    for n in shape:
        count *= n
    if count * dt.itemsize != len(data):
        raise ValueError(
            f"an array of shape {shape} and dtype {dt.str} needs {count * dt.itemsize} bytes; "
            f"the file gives {len(data)}"
        )
    if not isinstance(fortran, (bool, int)):
        raise ValueError(f"an array whose order flag is a {type(fortran).__name__}")
    # a copy in native byte order, as numpy's own unpickling gives (same values; torch takes native only)
    native = np.frombuffer(data, dtype=dt).astype(dt.newbyteorder("="), copy=True)
    return native.reshape(shape, order="F" if fortran else "C")


def _to_numpy(record: _Record) -> Any:
    """The numpy object ``record`` stands for, rebuilt from a whitelisted dtype, int shape and exact bytes only."""
    args, state = record.args, record.state
    if isinstance(record, _DtypeRecord):
        return record.dtype()
    if isinstance(record, _ScalarRecord) and len(args) == 2 and state is None:
        return _build_array(args[0], (), args[1], False)[()]
    if isinstance(record, _FrombufferRecord) and len(args) == 4 and args[3] in ("C", "F") and state is None:
        return _build_array(args[1], args[2], args[0], args[3] == "F")
    if isinstance(record, _ArrayRecord) and len(args) == 3 and args[0] is _NdarrayName:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]  # (version, shape, dtype, is_fortran, data); the oldest numpy wrote no version
        if not (isinstance(state, tuple) and len(state) == 4):
            raise ValueError(f"a numpy array whose state is not (shape, dtype, is_fortran, data): {state!r:.100}")
        return _build_array(state[1], state[0], state[3], state[2])
    raise ValueError(f"a numpy object that is not an array of numbers ({type(record).__name__} {args!r:.100})")


def _rebuild_arrays(obj: Any) -> Any:
    """``obj`` (a loaded .pkl) with every :class:`_Record` replaced by the numpy array/scalar/dtype it stands for.

    Dicts and lists change in place, tuples are rebuilt; a record or container the pickle's memo shares is
    rebuilt once. Raises ``ValueError`` for any record that is not a plain array of numbers and for nesting
    deeper than :data:`_PICKLE_NESTING`.
    """
    memo: dict[int, tuple[Any, Any]] = {}  # id -> (original, rebuilt); the original is kept alive

    def rebuild(value: Any, depth: int) -> Any:
        if not isinstance(value, (_Record, dict, list, tuple)):
            return value
        if id(value) in memo:
            return memo[id(value)][1]
        if depth > _PICKLE_NESTING:
            raise ValueError(f"containers nested more than {_PICKLE_NESTING} deep")
        if isinstance(value, _Record):
            memo[id(value)] = (value, _to_numpy(value))
        elif isinstance(value, dict):
            memo[id(value)] = (value, value)
            for k in list(value):
                value[k] = rebuild(value[k], depth + 1)
        elif isinstance(value, list):
            memo[id(value)] = (value, value)
            value[:] = [rebuild(v, depth + 1) for v in value]
        else:
            memo[id(value)] = (value, value)  # a cycle back to this tuple (through a list) keeps the original
            memo[id(value)] = (value, tuple(rebuild(v, depth + 1) for v in value))
        return memo[id(value)][1]

    return rebuild(obj, 0)


def _encode_latin1(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (array bytes stored as latin1 text); no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ValueError(f"_codecs.encode with codec {encoding!r:.40}: only latin1 text is array data")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-2 pickles write ``b""`` (an empty array's data); never ``bytes(n)``."""
    if args:
        raise ValueError("bytes(...) with arguments: only b'' is written this way")
    return b""


_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
# (module, name) a pickle may name -> what it gets instead. None of these constructs a numpy object or runs
# anything chosen by the file.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _ArrayRecord for m in _MULTIARRAY},
    **{(m, "scalar"): _ScalarRecord for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _FrombufferRecord for m in _NUMERIC},
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _DtypeRecord,
    ("_codecs", "encode"): _encode_latin1,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("collections", "OrderedDict"): OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader for weight files that refuses every global outside a short allow-list.

    ``pickle.load`` imports and calls whatever callable the file names (``os.system``, ``eval``, any
    class's constructor), so loading an untrusted pickle is running untrusted code. Weight files such as
    detectron2's ``.pkl`` only need dicts, lists, strings, numbers and numpy arrays, and the only globals
    those need are numpy's array, dtype and scalar reconstructors (plus ``_codecs.encode`` for Python-2
    pickles and ``collections.OrderedDict``). :meth:`find_class` binds numpy's names to inert recorders
    (never to numpy itself: its ``__setstate__`` methods trust the file, see :class:`_Record`), and
    raises :class:`UnsafeCheckpointError` naming anything else, before it is imported.
    :func:`_rebuild_arrays` then makes each array from a whitelisted number dtype, an int shape and
    exactly as many bytes as those need (:func:`read_checkpoint` does both), so no object array, string
    array or hand-made dtype gets through.
    """

    def find_class(self, module: str, name: str) -> Any:
        stand_in = _ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise UnsafeCheckpointError(
                f"the pickle names the global '{module}.{name}', and loading it would run code from the file; "
                "only numpy arrays and plain containers are read from a .pkl"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            "the pickle refers to persistent objects (a legacy torch.save file?); re-save it with torch.save "
            "of a plain state dict"
        )


class Foreign:
    """An inert stand-in for one object of a global that a torch file names but we never import.

    torch's weights-only unpickler may only call, construct (``__new__``) and ``__setstate__`` globals on
    its allow-list. Binding each foreign global's *name* to a subclass of this class (see
    :func:`_load_torch_zip`) lets that unpickler finish the file while every such call lands here: the
    arguments and state are discarded, no module from the file is imported, no code from it runs. The
    result is a tree whose non-weight parts (``hyper_parameters``, ``message_hub``, ...) are stand-ins;
    a layout only ever reads a container of tensors, and a stand-in found there is an error.
    """

    global_name: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Foreign:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<unread {self.global_name}>"


def _foreign_names(obj: Any, depth: int = 0) -> set[str]:
    """The globals of every :class:`Foreign` stand-in in a loaded tree."""
    if isinstance(obj, Foreign):
        return {obj.global_name}
    if depth > 64:  # pragma: no cover - weight files are shallow
        return set()
    if isinstance(obj, Mapping):
        children: Any = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = obj
    else:
        return set()
    return set().union(*(_foreign_names(c, depth + 1) for c in children)) if children else set()


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a pre-1.6 (non-zip) torch.save file
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since 1.6 is a zip archive


def _resave_command(src: Path, code: str) -> str:
    """A shell command that runs ``code`` (Python, with @IN@/@OUT@ for the source and destination paths)."""
    dst = src.with_name(src.name.split(".")[0] + ".resaved.pt")
    code = code.replace("@IN@", json.dumps(str(src))).replace("@OUT@", json.dumps(str(dst)))
    return f"python -c {shlex.quote(code)}"


def _legacy_refusal(path: Path, exc: Exception) -> UnsafeCheckpointError:
    reason = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
    fix = _resave_command(path, "import torch; torch.save(torch.load(@IN@, weights_only=False), @OUT@)")
    return UnsafeCheckpointError(
        f"refusing {path}: this legacy (pre-1.6, non-zip) torch file pickles Python objects besides tensors "
        f"and plain containers{f' ({reason})' if reason else ''}, and only the zip format lets us leave "
        "them unread. Fix, where you trust the file (it runs the file's pickle): re-save it unchanged in "
        f"the current format, then import that file with the same options: {fix}"
    )


def _module_refusal(path: Path, names: set[str]) -> UnsafeCheckpointError:
    fix = _resave_command(path, "import torch; torch.save(torch.load(@IN@, weights_only=False).state_dict(), @OUT@)")
    return UnsafeCheckpointError(
        f"refusing {path}: it is a pickled Python object ({', '.join(sorted(names))}), not a state dict, and "
        "rebuilding it would run code from the file. Fix, where you trust the file: save its state dict "
        f"(torchvision names at the top level, the 'torchvision' layout) and import that: {fix}"
    )


def _is_truncated_eof(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(s in text for s in ("truncated", "ran out of input", "unexpected eof"))


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    size = path.stat().st_size
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise CheckpointImportError(f"{path}: unreadable safetensors header ({exc})") from exc
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointImportError(
            f"{path}: truncated safetensors file ({size} bytes; its header describes {8 + n + end}): the download "
            "or copy stopped early"
        )
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type
        raise CheckpointImportError(f"{path}: unreadable safetensors file ({exc})") from exc


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < path.stat().st_size and head[8:9] == b"{"


def _is_weights_only_refusal(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Weights only" in text


# torch.load(weights_only=True) is all that stands between a torch file's pickle and this process, and
# before 2.10 it had public holes a crafted file can use: CVE-2025-32434 (GHSA-53q9-r3pm-6pq6, code
# execution, fixed in torch 2.6.0) and CVE-2026-24747 (GHSA-63cw-57p8-fm3p: SETITEM(S) on non-dicts and
# storage sizes larger than their data corrupt memory, fixed in 2.10.0). The project still runs on older
# torch (pyproject: torch>=2.1); only reading torch pickles needs 2.10. (2.10 also has everything
# :func:`_load_torch_zip` uses: get_unsafe_globals_in_checkpoint, 2.5; named safe globals, 2.6.)
_TORCH_LOAD_SAFE_FROM = (2, 10)


def _torch_version() -> tuple[int, int]:
    found = re.match(r"\s*(\d+)\.(\d+)", str(torch.__version__))
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _refuse_unsafe_torch_load(path: Path) -> None:
    """Raise unless this torch's ``torch.load(weights_only=True)`` has no known hole (see above)."""
    if _torch_version() >= _TORCH_LOAD_SAFE_FROM:
        return
    raise UnsafeCheckpointError(
        f"refusing {path}: it is a torch pickle (torch.save) file, and this is torch {torch.__version__}, whose "
        "torch.load(weights_only=True) a crafted file can break out of: CVE-2025-32434 (code execution, fixed in "
        "torch 2.6) and CVE-2026-24747 / GHSA-63cw-57p8-fm3p (memory corruption, fixed in torch 2.10). Import "
        "it where torch >= 2.10 is installed; .safetensors and .pkl files are read without torch's unpickler "
        "and import on any torch."
    )


def _load_torch_zip(path: Path) -> Any:
    """``torch.load(weights_only=True)``, with each foreign global the file names bound to a :class:`Foreign`.

    mmengine checkpoints (open-mmlab/mmengine@25434293 ``runner/runner.py`` lines 2214-2236,
    ``save_checkpoint``: ``{'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'}``, the
    hub's ``log_scalars`` being ``HistoryBuffer`` objects) and Lightning checkpoints with
    ``hyper_parameters`` objects load this way; their weights come back as tensors, the rest as stand-ins.
    """
    _refuse_unsafe_torch_load(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _is_weights_only_refusal(exc):
            raise CheckpointImportError(f"{path}: unreadable torch file ({exc})") from exc
    try:  # statically lists the pickle's GLOBALs outside torch's allow-list; loads nothing
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:
        raise CheckpointImportError(f"{path}: unreadable torch file ({exc})") from exc
    stand_ins = [(type(f"Foreign[{n}]", (Foreign,), {"global_name": n}), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an opcode or dynamic global the weights-only unpickler still refuses
        if not _is_weights_only_refusal(exc):
            raise CheckpointImportError(f"{path}: unreadable torch file ({exc})") from exc
        if "is blocked" in str(exc):  # torch never allows sys/os/posix/nt globals: no weights file names them
            line = next((ln.strip() for ln in str(exc).splitlines() if "is blocked" in ln), str(exc))
            raise UnsafeCheckpointError(
                f"refusing {path}: {line} A weights file has no reason to name these modules; do not load it "
                "with weights_only=False."
            ) from None
        raise UnsafeCheckpointError(
            f"refusing {path}: it pickles Python objects that cannot be left unread ({exc}); where you trust the "
            "file, re-save only its state dict: "
            + _resave_command(
                path,
                "import torch; c = torch.load(@IN@, weights_only=False); "
                "torch.save({'state_dict': c['state_dict']}, @OUT@)",
            )
        ) from None


def read_checkpoint(path: str | os.PathLike) -> tuple[Any, str]:
    """Load ``path`` without running code from it; return ``(object, format)``.

    ``format`` is ``"torch"`` (``torch.load(weights_only=True)``, zip or legacy file; see
    :func:`_load_torch_zip` for objects left unread), ``"safetensors"`` or ``"pickle"`` (a plain pickle
    read by :class:`RestrictedUnpickler`, e.g. a detectron2 ``.pkl``). A file cut short says "truncated".
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    if _is_safetensors(path):
        return _read_safetensors(path), "safetensors"
    if head == _ZIP_MAGIC:
        if not zipfile.is_zipfile(path):  # the zip's directory sits at its end: a cut file has none
            raise CheckpointImportError(
                f"{path}: truncated torch file ({size} bytes): it starts as torch.save's zip archive but its end "
                "(the archive's directory) is missing, so the download or copy stopped early"
            )
        obj = _load_torch_zip(path)
        if isinstance(obj, Foreign):
            raise _module_refusal(path, _foreign_names(obj))
        return obj, "torch"
    if head[:1] != b"\x80":
        raise CheckpointImportError(f"{path}: not a torch, pickle or safetensors file (starts with {head!r})")
    with open(path, "rb") as fh:
        try:
            first = RestrictedUnpickler(fh, encoding="latin1").load()
        except UnsafeCheckpointError as exc:
            raise UnsafeCheckpointError(f"refusing {path}: {exc}") from None
        except Exception as exc:  # truncated or corrupt pickle
            if _is_truncated_eof(exc):
                raise CheckpointImportError(f"{path}: truncated pickle file ({size} bytes; {exc})") from exc
            raise CheckpointImportError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    if first != _TORCH_LEGACY_MAGIC:
        try:
            return _rebuild_arrays(first), "pickle"
        except (ValueError, TypeError, MemoryError, RecursionError) as exc:
            raise CheckpointImportError(
                f"refusing {path}: {exc or type(exc).__name__}; a .pkl is read only as plain containers of numpy "
                "arrays of numbers"
            ) from None
    _refuse_unsafe_torch_load(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if _is_truncated_eof(exc):
            detail = f"; {exc}" if str(exc) else ""
            raise CheckpointImportError(f"{path}: truncated torch file (legacy format, {size} bytes{detail})") from exc
        if _is_weights_only_refusal(exc):
            raise _legacy_refusal(path, exc) from None
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
    - ``markers``: key prefixes in the container that only this library writes; with a key under
      ``prefix`` they *recognise* a checkpoint as this library's even where other keys do not fit, so
      ``--prefix`` cannot take it over. ``signature(checkpoint)``: the file says whose it is (a top-level
      tag); ``auto`` only tries such a layout on a file that carries the tag, and takes it over the
      others that fit (its names are torchvision's, so without the tag it would tie with them).
    - ``stem_padding``: what the library's 3×3 stem pads by, with ``stem_source`` citing where it is set;
      ``None`` where the library does not fix it (then ``--stem-padding`` must say).
    - ``drop_outside_prefix``: every key outside ``prefix`` is dropped (``--prefix``: recorded by name,
      never silent).
    - ``fills_bn_counters``: the format may omit BN ``num_batches_tracked`` (detectron2); missing ones are
      set to 0, which eval-mode features never read.
    - ``refuse(container, keys_fit)``: a message when the checkpoint is this library's but its network
      differs from our backbones in a way the keys cannot show, else ``None``.
    """

    name: str
    description: str
    containers: tuple[tuple[str, ...], ...]
    prefix: str
    heads: tuple[str, ...] = ()
    rename: Callable[[str], str | None] = _same
    markers: tuple[str, ...] = ()
    signature: Callable[[Any], bool] | None = None
    stem_padding: int | None = None
    stem_source: str = ""
    drop_outside_prefix: bool = False
    fills_bn_counters: bool = False
    refuse: Refusal | None = None

    def head_of(self, key: str) -> str | None:
        """The head rule that drops ``key``, or ``None``."""
        for head in self.heads:
            if _under(key, head):
                return head
        if self.drop_outside_prefix and not key.startswith(self.prefix):
            return key.split(".", 1)[0]
        return None

    def recognises(self, ckpt: Any) -> bool:
        """Whether ``ckpt`` carries this library's marks: a key under ``prefix`` and one under a marker."""
        if not self.markers:
            return False
        try:
            container, _ = _find_container(ckpt, self)
        except KeyMismatchError:
            return False
        keys = [str(k) for k in container]
        return any(k.startswith(self.prefix) for k in keys) and any(_under(k, m) for k in keys for m in self.markers)


def _under(key: str, head: str) -> bool:
    return key == head or key.startswith(head + ".")


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


def _tagged(key: str, value: str) -> Callable[[Any], bool]:
    def signed(ckpt: Any) -> bool:
        return isinstance(ckpt, Mapping) and ckpt.get(key) == value

    return signed


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

# solo-learn replaces a ResNet's stem for CIFAR: vturrisi/solo-learn@9187ea39 solo/methods/base.py
# lines 199-203 (and 648-652 for momentum_backbone): Conv2d(3, 64, kernel_size=3, stride=1, padding=2),
# maxpool = Identity. Our resnet18-small pads by 1 (zoo/backbones.py), so the same weights give other
# features (the issue measured max |Δ| 9.1 on one batch).
_SOLO_LEARN_STEM = (
    "vturrisi/solo-learn solo/methods/base.py lines 199-203, CIFAR: "
    "Conv2d(3, 64, kernel_size=3, stride=1, padding=2) without max-pool"
)

# The two detectron2 converters people run. Both rename every key without "layer" to "stem." + key, so a
# classifier's fc.weight/fc.bias arrive as stem.fc.* (dropped here as a named head), keep BN
# num_batches_tracked, and write numpy arrays in {"model": ..., "__author__": ..., "matching_heuristics":
# True}: facebookresearch/detectron2@02b5c4e2 tools/convert-torchvision-to-d2.py lines 38-51
# (__author__ "torchvision"); facebookresearch/moco@3402035 detection/convert-pretrain-to-detectron2.py
# lines 18-37 (state_dict -> module.encoder_q.* only, so encoder_q.fc, the MLP head with --mlp, becomes
# stem.fc.0/stem.fc.2; __author__ "MOCO").
_DETECTRON2_HEADS = ("stem.fc",)

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
            markers=("momentum_backbone", "momentum_projector", "momentum_classifier", "projector", "classifier"),
            stem_padding=2,
            stem_source=_SOLO_LEARN_STEM,
        ),
        Layout(
            "lightly",
            "[state_dict ->] backbone.* as a torchvision ResNet or nn.Sequential of its children "
            "(0 conv1, 1 bn1, 4-7 layer1-4); projection/prediction heads, momentum/teacher copies dropped",
            (("state_dict",), ()),
            "backbone.",
            heads=_LIGHTLY_HEADS,
            rename=_lightly_name,
            markers=(
                "projection_head",
                "prediction_head",
                "backbone_momentum",
                "teacher_backbone",
                "online_classifier",
            ),
            refuse=_lightly_refusal,
        ),
        Layout(
            "moco-v2",
            "state_dict -> module.encoder_q.*; encoder_q.fc (MLP head), encoder_k, queue dropped",
            (("state_dict",),),
            "module.encoder_q.",
            heads=("module.encoder_q.fc", "module.encoder_k", "module.queue", "module.queue_ptr"),
            markers=("module.encoder_q", "module.encoder_k"),
        ),
        Layout(
            "moco-v3",
            "state_dict -> module.base_encoder.*; base_encoder.fc (projector), momentum_encoder, predictor dropped",
            (("state_dict",),),
            "module.base_encoder.",
            heads=("module.base_encoder.fc", "module.momentum_encoder", "module.predictor"),
            markers=("module.base_encoder", "module.momentum_encoder"),
        ),
        Layout(
            "mmselfsup",
            "mmengine checkpoint: state_dict -> backbone.* (mmcls ResNet names = torchvision's); neck, head, "
            "target_net, online_net (0.x duplicate of backbone) dropped; meta/message_hub/optimizer left unread",
            (("state_dict",),),
            "backbone.",
            heads=("neck", "head", "target_net", "online_net"),
            markers=("neck", "target_net", "online_net"),
        ),
        # open-mmlab/mmselfsup@db861f30 tools/model_converters/extract_backbone_weights.py lines 20-28:
        # dict(state_dict={key[9:] for backbone.* keys}, author='MMSelfSup'), i.e. mmcls ResNet names with
        # 'backbone.' cut off; the author tag is what tells it from a torchvision state dict.
        Layout(
            "mmselfsup-backbone",
            "mmselfsup extract_backbone_weights.py output: state_dict -> mmcls ResNet names, author 'MMSelfSup'",
            (("state_dict",),),
            "",
            signature=_tagged("author", "MMSelfSup"),
        ),
        Layout(
            "vissl",
            "classy_state_dict.base_model.model.trunk (or model_state_dict, or top level) -> _feature_blocks.*; "
            "the heads stored beside the trunk are not read",
            (("classy_state_dict", "base_model", "model", "trunk"), ("model_state_dict",), ()),
            "_feature_blocks.",
            markers=("_feature_blocks",),
        ),
        Layout(
            "detectron2",
            "detectron2 .pkl (ours, detectron2's convert-torchvision-to-d2.py, MoCo's "
            "convert-pretrain-to-detectron2.py): model -> stem.* / res2-5.* numpy arrays; stem.fc (the source's "
            "fc) dropped; absent BN num_batches_tracked set to 0",
            (("model",),),
            "",
            heads=_DETECTRON2_HEADS,
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
        f"torchvision names under '{prefix}' (from --prefix); everything else dropped and recorded",
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
    dropped: dict[str, list[str]] = field(default_factory=dict)  # head rule -> the keys it dropped
    filled: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    stem: str = ""

    def record(self) -> dict[str, Any]:
        """What ``meta.extra["source"]`` records about the mapping (every dropped key by name)."""
        return {
            "layout": self.layout.name,
            "container": self.container,
            "prefix": self.layout.prefix,
            "keys_imported": len(self.state) - len(self.filled),
            "dropped": {rule: len(keys) for rule, keys in sorted(self.dropped.items())},
            "dropped_keys": {rule: keys for rule, keys in sorted(self.dropped.items())},
            "filled": self.filled,
            "source_dtypes": self.dtypes,
            "stem": self.stem,
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
    """A tensor, or a numpy array of a weight dtype (any byte order) as a native-order copy; else ``None``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype in _WEIGHT_DTYPES:
        return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), copy=True))
    return None


@functools.cache
def _expected(arch: str) -> dict[str, torch.Tensor]:
    """``arch``'s state dict as meta tensors: names, shapes and dtypes without initialising any weights."""
    with torch.device("meta"):
        return build_backbone(arch).state_dict()


def _check_stem(layout: Layout, state: dict[str, torch.Tensor], source: str, stem_padding: int | None) -> str:
    """The stem check every path runs; returns what the record says about the stem, or raises.

    A 3×3 ``conv1`` (our ``resnet18-small``: stride 1, padding 1, no max-pool) has the same tensor shapes
    whatever its padding, so the padding must come from the layout (where the library fixes it; that
    wins over ``--stem-padding``) or from ``--stem-padding``. A 7×7 stem is torchvision's (padding 3 and
    max-pool are the only ResNet stem with that kernel in every layout here).
    """
    kernel = tuple(state["conv1.weight"].shape[-2:])
    if kernel != (3, 3):
        return f"{kernel[0]}x{kernel[1]} (torchvision's stem)"
    if layout.stem_padding is not None:
        if layout.stem_padding != 1:
            raise UnsupportedCheckpointError(
                f"layout '{layout.name}': '{source}' is a 3x3 stem, and this library pads it by "
                f"{layout.stem_padding} ({layout.stem_source}); our resnet18-small pads by 1, so the same weights "
                "would give other features. No registered backbone matches it (--stem-padding cannot change "
                "what the layout knows); not imported."
            )
        return f"3x3, padding 1 ({layout.stem_source})"
    if stem_padding is None:
        raise UnsupportedCheckpointError(
            f"layout '{layout.name}': '{source}' is a 3x3 stem, whose padding the tensors cannot show, and this "
            "layout does not fix it (solo-learn's CIFAR stem pads by 2, ours by 1: other features). Read the "
            "source network's conv1 and pass --stem-padding 1 if it is Conv2d(3, 64, kernel_size=3, stride=1, "
            "padding=1) with no max-pool after it (our resnet18-small)."
        )
    if stem_padding != 1:
        raise UnsupportedCheckpointError(
            f"layout '{layout.name}': --stem-padding {stem_padding}: no registered backbone has a 3x3 stem "
            "padded by that (resnet18-small pads by 1); not imported."
        )
    return "3x3, padding 1 (--stem-padding 1)"


def map_checkpoint(ckpt: Any, layout: Layout, arch: str, stem_padding: int | None = None) -> Mapped:
    """Apply ``layout`` to a loaded checkpoint for backbone ``arch``; raise unless every key is accounted for.

    Raises :class:`KeyMismatchError` listing unknown keys (neither a backbone key nor dropped by a head
    rule), missing backbone keys and shape mismatches, or :class:`UnsupportedCheckpointError` from the
    layout's ``refuse`` rule or from the stem check (:func:`_check_stem`, with ``stem_padding`` from
    ``--stem-padding``). Every import path, ``--prefix`` included, goes through here.
    """
    expected = _expected(arch)
    container, where = _find_container(ckpt, layout)
    state: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    dropped: dict[str, list[str]] = {}
    unknown: list[str] = []
    for key, value in container.items():
        key = str(key)
        head = layout.head_of(key)
        if head is not None:
            dropped.setdefault(head, []).append(key)
            continue
        name = layout.rename(key[len(layout.prefix) :]) if key.startswith(layout.prefix) else None
        tensor = _as_tensor(value)
        if name is None or name not in expected or tensor is None:
            unknown.append(f"{key} (an unread {value.global_name} object)" if isinstance(value, Foreign) else key)
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
    stem = _check_stem(layout, state, source_of["conv1.weight"], stem_padding)
    filled = []
    for k in expected:
        if k not in state:  # only BN counters get here (missing is empty)
            state[k] = torch.zeros_like(expected[k], device="cpu")
            filled.append(k)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for k, v in state.items() if k not in filled})
    return Mapped(layout, state, where, dropped, filled, dtypes, stem)


def detect_layout(ckpt: Any, arch: str, stem_padding: int | None = None) -> Mapped:
    """Try every layout in :data:`LAYOUTS`; return the only one that fits, else raise saying why.

    Where several fit and exactly one of them is signed by the file (``Layout.signature``, e.g.
    mmselfsup's ``author`` tag beside torchvision names), the signed one is taken.
    """
    fits: list[Mapped] = []
    refused: list[tuple[str, UnsupportedCheckpointError]] = []
    reasons: list[str] = []
    for layout in LAYOUTS.values():
        if layout.signature is not None and not layout.signature(ckpt):
            reasons.append(f"  layout '{layout.name}': the file does not carry its tag")
            continue  # a tag-only layout is never guessed for an untagged file (explicit --layout still works)
        try:
            fits.append(map_checkpoint(ckpt, layout, arch, stem_padding))
        except UnsupportedCheckpointError as exc:
            refused.append((layout.name, exc))
        except KeyMismatchError as exc:
            reasons.append(f"  {exc}")
    signed = [m for m in fits if m.layout.signature is not None and m.layout.signature(ckpt)]
    if len(signed) == 1 and not refused:
        return signed[0]
    if len(fits) == 1 and not refused:
        return fits[0]
    if not fits and len(refused) == 1:
        raise refused[0][1]
    if fits or refused:
        names = [m.layout.name for m in fits] + [f"{name} (refused)" for name, _ in refused]
        raise CheckpointImportError(
            f"--layout auto: the checkpoint fits several layouts ({', '.join(names)}); pass --layout to choose"
            + "".join(f"\n  {exc}" for _, exc in refused)
        )
    raise KeyMismatchError(
        "--layout auto: no layout fits this checkpoint (use --layout NAME to see one layout's full error, or "
        "--prefix for a layout we do not know):\n" + "\n".join(reasons)
    )


def recognised_layouts(ckpt: Any, arch: str, stem_padding: int | None = None) -> dict[str, str]:
    """Known layouts that claim ``ckpt``: name -> how (it fits, it is refused by, or it carries the marks).

    ``--prefix`` is for layouts we do not know; a checkpoint claimed here is refused under ``--prefix``,
    so a prefix cannot skip a known layout's head rules, stem knowledge or refusals.
    """
    claims: dict[str, str] = {}
    for layout in LAYOUTS.values():
        if layout.signature is not None and not layout.signature(ckpt):
            continue
        try:
            map_checkpoint(ckpt, layout, arch, stem_padding)
            claims[layout.name] = "fits"
        except UnsupportedCheckpointError as exc:
            claims[layout.name] = f"refused: {exc}"
        except KeyMismatchError:
            if layout.recognises(ckpt):
                claims[layout.name] = f"carries its keys ({', '.join(layout.markers)})"
    return claims


# ----------------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------------

# Training crops whose size is the resolution the network was trained at (mmselfsup 1.x configs, e.g.
# open-mmlab/mmselfsup@db861f30 configs/selfsup/_base_/datasets/imagenet_byol.py lines 6-10:
# dict(type='RandomResizedCrop', size=224, ...); mmcv's own transform calls it ``scale``).
_CROP_TYPES = ("RandomResizedCrop", "RandomResizedCropAndInterpolationWithTwoPic")
_CFG_AT_MOST = 1 << 20  # characters; mmengine's pretty_text of a whole run config is tens of kB


def _crop_sizes(config_text: str) -> set[int]:
    """Sizes of the training crops in an mmengine config's text, read with ``ast`` (never executed).

    Raises ``ValueError`` saying why for a text it cannot read: longer than :data:`_CFG_AT_MOST`, not
    Python, or nested too deep for the parser (``MemoryError``/``RecursionError`` from ``ast``).
    """
    if len(config_text) > _CFG_AT_MOST:
        raise ValueError(f"it is {len(config_text)} characters, more than any config ({_CFG_AT_MOST})")
    try:
        tree = ast.parse(config_text)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ValueError(f"it is not Python that can be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    sizes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            fields = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        elif isinstance(node, ast.Dict):
            fields = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
        else:
            continue
        kind = fields.get("type")
        if not (isinstance(kind, ast.Constant) and kind.value in _CROP_TYPES):
            continue
        for key in ("size", "scale"):
            try:
                value = ast.literal_eval(fields[key]) if key in fields else None
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue  # not a literal (a variable, an expression): not a size this reads
            if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
                value = value[0]
            if isinstance(value, int) and not isinstance(value, bool):
                sizes.add(value)
    return sizes


def input_size_in(ckpt: Any, path: str | os.PathLike = "the checkpoint") -> tuple[int, str] | None:
    """The training resolution a checkpoint records, with where it was read; ``None`` if it records none.

    Only mmengine checkpoints record it among the formats we read: ``meta['cfg']`` is the run's config as
    Python text (open-mmlab/mmengine@25434293 ``runner/runner.py`` line 2215:
    ``cfg=self.cfg.pretty_text``), whose training crops give it. Several different crop sizes (multi-crop)
    tell nothing and give ``None``. A ``meta.cfg`` that cannot be read (too long, not Python, nested too
    deep) is a :class:`CheckpointImportError` naming ``path``: the file claims to record the size and hides it.
    """
    meta = ckpt.get("meta") if isinstance(ckpt, Mapping) else None
    text = meta.get("cfg") if isinstance(meta, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        sizes = _crop_sizes(text)
    except ValueError as exc:
        raise CheckpointImportError(
            f"refusing {path}: its meta.cfg (the mmengine config, where the training image size is read) cannot "
            f"be read: {exc}"
        ) from None
    if len(sizes) != 1:
        return None
    return sizes.pop(), "checkpoint meta.cfg (" + "/".join(_CROP_TYPES[:1]) + " size)"


_OWN_FILES = frozenset({WEIGHTS, HEADS, META})


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that exists, unless ``overwrite`` and it holds an artifact's own files and nothing else.

    ``save_artifact`` replaces the whole directory, so ``--force`` on a folder holding anything else
    (a user's notes, other runs) would delete it: that is refused, naming what is there.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise CheckpointImportError(f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        return  # an empty folder made beforehand
    if not (out / META).is_file():
        raise CheckpointImportError(f"{out} exists and is not an artifact (no {META}); choose another --out")
    if not overwrite:
        raise CheckpointImportError(f"{out} exists; pass --force to replace the artifact there")
    others = sorted(p.name for p in out.iterdir() if p.name not in _OWN_FILES)
    if others:
        raise CheckpointImportError(
            f"--force: {out} holds files that are not the artifact's own ({_listing(others)}); --force only "
            f"replaces {', '.join(sorted(_OWN_FILES))}, so move those away or choose another --out"
        )


def _read_and_map(
    src: Path, arch: str, layout: str, prefix: str | None, stem_padding: int | None
) -> tuple[Any, str, Mapped, tuple[int, str] | None]:
    """:func:`import_checkpoint`'s reading steps: load, map with the chosen layout, read a recorded input size."""
    ckpt, fmt = read_checkpoint(src)
    if prefix is not None:
        claims = recognised_layouts(ckpt, arch, stem_padding)
        if claims:
            refusals = [how.removeprefix("refused: ") for how in claims.values() if how.startswith("refused: ")]
            raise (UnsupportedCheckpointError if refusals else CheckpointImportError)(
                f"{src}: --prefix is for a layout we do not know, and this checkpoint is claimed by known "
                f"layout(s): {'; '.join(f'{name} ({how})' for name, how in claims.items())}. A prefix cannot "
                "override what a known layout knows (its heads, stem, refusals): "
                + ("not imported." if refusals else f"use --layout {next(iter(claims))} (or auto).")
            )
        mapped = map_checkpoint(ckpt, prefix_layout(prefix), arch, stem_padding)
    elif layout == "auto":
        mapped = detect_layout(ckpt, arch, stem_padding)
    else:
        mapped = map_checkpoint(ckpt, LAYOUTS[layout], arch, stem_padding)
    recorded = input_size_in(ckpt, src)
    return ckpt, fmt, mapped, recorded


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
    stem_padding: int | None = None,
) -> Path:
    """Turn the checkpoint at ``path`` into an artifact at ``out``; return ``out``.

    ``layout`` is a key of :data:`LAYOUTS` or ``"auto"``; ``prefix`` (only with ``layout="auto"``) selects
    :func:`prefix_layout` instead, and is refused for a checkpoint a known layout claims
    (:func:`recognised_layouts`). ``stem_padding`` states a 3×3 stem's padding where the layout does not
    fix it (see :func:`_check_stem`).

    ``input_size`` (``meta.input_size``, the size evaluators resize images to) comes from the checkpoint
    where it records one (:func:`input_size_in`) or from ``input_size``; both given and different is an
    error. Neither is an error too: a ResNet's tensors fit any resolution, so a default (224, or 32 for a
    small stem) would silently evaluate a 96-px STL-10 or a 64-px network at the wrong size.
    The written artifact is loaded back and compared tensor by tensor before this returns.
    """
    spec = get_spec(arch)
    src = Path(path).resolve()
    out = Path(out)
    if prefix is not None and layout != "auto":
        raise CheckpointImportError("--prefix defines its own layout; do not combine it with --layout")
    if layout != "auto" and layout not in LAYOUTS:
        raise CheckpointImportError(f"unknown layout '{layout}' (known: auto, {', '.join(LAYOUTS)})")
    _check_out(out, overwrite)
    try:
        ckpt, fmt, mapped, recorded = _read_and_map(src, arch, layout, prefix, stem_padding)
    except (MemoryError, RecursionError) as exc:  # the specific checks missed a file built to exhaust them
        raise CheckpointImportError(
            f"refusing {src}: reading it raised {type(exc).__name__} (nested or sized beyond any weights file)"
        ) from None
    if recorded is not None and input_size is not None and recorded[0] != input_size:
        raise CheckpointImportError(
            f"--input-size {input_size} contradicts {src}'s {recorded[1]}: {recorded[0]}; drop the flag or fix it"
        )
    if recorded is None and input_size is None:
        raise CheckpointImportError(
            f"{src} does not record the image size its network was trained at, and evaluators resize every image "
            "to meta.input_size: pass --input-size (the pretraining crop size, e.g. 224 for ImageNet, 96 for "
            f"STL-10, 32 for CIFAR{' - usual for a small stem' if spec.stem == 'small' else ''})"
        )
    size, size_from = (input_size, "--input-size") if input_size is not None else recorded  # type: ignore[misc]
    with torch.device("meta"):  # no initialisation: every tensor comes from the checkpoint
        model = build_backbone(arch)
    expected = _expected(arch)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.state.items()}, strict=True, assign=True)
    source = {"path": str(src), "bytes": src.stat().st_size, "sha256": sha256_file(src), "format": fmt}
    unread = sorted(_foreign_names(ckpt))
    meta = ArtifactMeta(
        architecture=arch,
        feature_dim=spec.feature_dim,
        input_size=size,
        method="imported",
        mean=tuple(mean),
        std=tuple(std),
        config={"arch": arch, "layout": layout, "prefix": prefix, "input_size": size, "stem_padding": stem_padding},
        extra={"source": {**source, **mapped.record(), "input_size_from": size_from, "objects_left_unread": unread}},
    )
    save_artifact(out, model, meta)
    written = load_artifact(out).model.state_dict()
    for k, v in model.state_dict().items():
        if not torch.equal(written[k], v):  # pragma: no cover - would be a bug in save/load
            raise CheckpointImportError(f"{out}: '{k}' changed on the way to disk")
    return out


def describe_layouts() -> str:
    """One line per layout, for ``--help``."""
    return "\n".join(f"  {name:18s} {layout.description}" for name, layout in LAYOUTS.items())
