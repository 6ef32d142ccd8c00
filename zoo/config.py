"""Small, typed, validated configs: one dataclass per component, YAML files of overrides.

``load_config(MyConfig, "file.yaml", ["optim.lr=0.1"])`` builds a ``MyConfig`` from its defaults, the YAML
file and dotted command-line overrides. An unknown key or a value of the wrong type is a ``ConfigError``
that names the key (and the file it came from). Configs are frozen once built; derived values (scaled LR,
step counts) belong in a separate object, never written back into the config.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "DuplicateKeyError",
    "load_config",
    "from_dict",
    "to_dict",
    "parse_override",
    "apply_overrides",
]

T = TypeVar("T")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping names the same key twice (PyYAML would keep the last one silently)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses duplicate
    keys: a suite with two ``byol:`` variants must not quietly become one (issue 24)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` merges; explicit keys override it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base constructor names it
                continue
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise DuplicateKeyError(
                    None, None, f"duplicate key '{key}' on line {seen} and line {line}", key_node.start_mark
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML with the safe loader (plus ``1e-3`` floats); use it for every config file."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


class ConfigError(ValueError):
    """A config key is unknown, mistyped or invalid. The message names the key and its source."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict form of a (nested) config dataclass, suitable for YAML/JSON and hashing."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(dataclasses.asdict(cfg))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless (int → float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{key}' = {value!r} matches none of {tp}")
    if origin is typing.Literal:
        # YAML 1.1 reads a bare `off` / `on` as a bool: `run.amp: off` must mean the "off" choice
        if isinstance(value, bool) and (word := "on" if value else "off") in args:
            return word
        if value not in args:
            raise ConfigError(f"{source}: key '{key}' = {value!r} must be one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: key '{key}' expects a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key '{key}' expects {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: key '{key}' expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: key '{key}' expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: key '{key}' expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: key '{key}' expects a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{source}: key '{key}' = {value!r} is not a {tp}")


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping for '{prefix.rstrip('.') or cls.__name__}'")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (valid keys of {cls.__name__}: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}", source) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid {cls.__name__} ({prefix or 'top level'}): {exc}") from exc
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.1"`` → ``(["optim", "lr"], 0.1)``; the value is parsed as YAML (so ``true``, ``[1,2]``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.subkey=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': cannot parse value: {exc}") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with dotted overrides applied (creating intermediate mappings)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = nxt
        node[path[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; supports ``_base_: other.yaml`` (relative to the file) for inheritance."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is not None:
        data = _deep_merge(load_yaml(path.parent / base), data)
    return data


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls`` ← YAML file ``path`` ← dotted ``overrides``; validated, unknown keys rejected."""
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} + overrides"
    return from_dict(cls, data, source=source)
