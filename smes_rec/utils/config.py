"""Strict loading of frozen, typed dataclasses from YAML.

Every configuration in smes-rec is a frozen dataclass. This module turns plain mappings (parsed YAML) into those
dataclasses, recursively, and rejects anything it does not understand: unknown keys, missing required keys and
values of the wrong type are errors that name the dotted key path (and the file when there is one). It also applies
``--set a.b.c=value`` overrides, parsing each value as YAML and validating it against the field's type.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "apply_overrides", "from_mapping", "load_yaml", "to_mapping"]


class ConfigError(ValueError):
    """A configuration that does not match its schema; the message names the key path."""


def _where(path: str, source: str | None) -> str:
    key = path or "<root>"
    return f"{source}: {key}" if source else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, source: str | None) -> Any:
    """Converts ``value`` to type ``tp`` or raises ConfigError naming ``path``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{_where(path, source)}: null is not allowed (expected {_type_name(tp)})")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, source)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{_where(path, source)}: {value!r} matches no type of {_type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{_where(path, source)}: {value!r} is not one of {list(allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _to_dataclass(value, tp, path, source)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(path, source)}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],)
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{_where(path, source)}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_convert(v, a, f"{path}[{i}]", source) for i, (v, a) in pairs)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items)  # frozen configs hold tuples, never mutable lists
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(path, source)}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return types.MappingProxyType(
            {_convert(k, key_tp, f"{path}.<key>", source): _convert(v, val_tp, f"{path}.{k}", source)
             for k, v in value.items()}
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(path, source)}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(path, source)}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(path, source)}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(path, source)}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{_where(path, source)}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {path}")


def _to_dataclass(value: Any, cls: type[T], path: str, source: str | None) -> T:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(path, source)}: expected a mapping for {cls.__name__}, got {value!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        prefix = f"{path}." if path else ""
        raise ConfigError(
            f"{_where(path, source)}: unknown key(s) {[prefix + str(k) for k in unknown]} for {cls.__name__}; "
            f"allowed: {sorted(fields)}"
        )
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], sub, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_where(sub, source)}: required key is missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{_where(path, source)}: {e}") from e


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, source: str | None = None) -> T:
    """Builds a dataclass ``cls`` from a mapping, strictly.

    Args:
        cls: A dataclass type; nested dataclass, Optional, Literal, list/tuple and dict fields are supported.
        data: The parsed mapping (``None`` is treated as empty).
        source: A file name to put in error messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: Naming the key path of an unknown key, a missing key or a value of the wrong type.
    """
    return _to_dataclass({} if data is None else data, cls, "", source)


def load_yaml(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Loads a YAML file into dataclass ``cls``, applying ``key.path=value`` overrides first.

    Args:
        cls: The dataclass type to build.
        path: The YAML file.
        overrides: Strings ``a.b.c=value``; each value is parsed as YAML.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: For a missing or unparseable file, or any schema violation (naming the file and key).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    data = _apply_to_mapping(dict(data or {}), overrides, cls)
    return from_mapping(cls, data, source=str(path))


def _apply_to_mapping(data: dict[str, Any], overrides: Sequence[str], cls: type) -> dict[str, Any]:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.path=value")
        parts = key.strip().split(".")
        _check_override_path(cls, parts, item)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return data


def _check_override_path(cls: type, parts: Sequence[str], item: str) -> None:
    """Fails early, naming the bad segment, when an override path does not exist in the schema."""
    tp: Any = cls
    for i, part in enumerate(parts):
        while get_origin(tp) in (Union, types.UnionType):
            non_none = [a for a in get_args(tp) if a is not type(None)]
            tp = non_none[0] if len(non_none) == 1 else Any
        if tp is Any or get_origin(tp) in (dict, Mapping):
            return
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:i])} is not a section")
        hints = get_type_hints(tp)
        if part not in hints:
            raise ConfigError(
                f"override {item!r}: unknown key {'.'.join(parts[: i + 1])!r}; allowed: {sorted(hints)}"
            )
        tp = hints[part]


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Returns a copy of the dataclass ``cfg`` with ``key.path=value`` overrides applied and validated."""
    data = _apply_to_mapping(to_mapping(cfg), overrides, type(cfg))
    return from_mapping(type(cfg), data)


def to_mapping(cfg: Any) -> Any:
    """Converts a config dataclass (recursively) into plain YAML-safe Python values."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_mapping(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_mapping(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: to_mapping(v) for k, v in cfg.items()}
    return cfg

