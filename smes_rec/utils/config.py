"""Strict loading of frozen, typed dataclasses from YAML.

Every configuration in smes-rec is a frozen dataclass. This module turns plain mappings (parsed YAML) into those
dataclasses, recursively, and rejects anything it does not understand: unknown keys, missing required keys and
values of the wrong type are errors that name the dotted key path and where the value came from: the file, or the
``--set a.b.c=value`` override that put it there. Overrides parse each value as YAML and validate it against the
field's type.

YAML is read with :func:`yaml_load`: PyYAML follows YAML 1.1, whose float pattern needs a dot and a signed exponent
(``1.0e+30``) and reads ``1e-3`` as a string. Its loader resolves ``1e-3``, ``1E-4`` and ``1.0e30`` as numbers too
(YAML 1.2's rule), in files and in ``--set`` values alike.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

__all__ = ["ConfigError", "apply_overrides", "check_overrides", "from_mapping", "load_yaml", "to_mapping", "yaml_load"]

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's float forms (exponent sign and the dot optional) plus YAML 1.1's base-60 floats, .inf and .nan.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string ``'1e-3'``."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parses YAML like ``yaml.safe_load``, reading scientific notation (``1e-3``, ``1E-4``) as numbers."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


class ConfigError(ValueError):
    """A configuration that does not match its schema; the message names the key path."""


class _Origin:
    """Where each value of a config came from: the file, or the ``--set`` override that wrote it.

    Args:
        file: The config file (None for a plain mapping).
        overrides: ``{dotted key: the override item}`` of every override applied.
    """

    def __init__(self, file: str | None, overrides: Mapping[str, str]):
        self.file, self.overrides = file, dict(overrides)

    def describe(self, path: str) -> str | None:
        """Names the source of the value at ``path`` (a value under an override blames that override)."""
        for key, item in self.overrides.items():
            if path == key or path.startswith((key + ".", key + "[")):
                return f"--set {item}"
        inside = [f"--set {item}" for key, item in self.overrides.items() if not path or key.startswith(path + ".")]
        if inside:  # a check over a whole section that an override changed
            return ", ".join([self.file, *inside]) if self.file else ", ".join(inside)
        return self.file


def _where(path: str, source: str | _Origin | None) -> str:
    key = path or "<root>"
    if isinstance(source, _Origin):
        source = source.describe(path)
    return f"{source}: {key}" if source else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, source: str | _Origin | None) -> Any:
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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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


def _to_dataclass(value: Any, cls: type[T], path: str, source: str | _Origin | None) -> T:
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


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, source: str | _Origin | None = None) -> T:
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
        ConfigError: For a missing or unparseable file, or any schema violation, naming the key and where its
            value came from (the file, or the ``--set`` override).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    data = _apply_to_mapping(dict(data or {}), overrides, cls)
    return from_mapping(cls, data, source=_Origin(str(path), _override_keys(overrides)))


def _override_keys(overrides: Sequence[str]) -> dict[str, str]:
    """``{dotted key: item}`` of well-formed overrides (a later one on the same key wins, as when applied)."""
    return {item.partition("=")[0].strip(): item for item in overrides}


def _parse_override(item: str, cls: type) -> tuple[list[str], Any]:
    """Splits ``a.b=value`` into checked key parts and the value parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    parts = key.strip().split(".")
    _check_override_path(cls, parts, item)
    try:
        return parts, yaml_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from e


def check_overrides(cls: type, overrides: Sequence[str]) -> None:
    """Checks ``key.path=value`` overrides on their own: each key exists and each value has its field's type.

    For a launcher that cannot read the config file the overrides apply to (checks that involve other fields
    happen when the whole config is loaded).

    Raises:
        ConfigError: Naming the override.
    """
    for item in overrides:
        parts, value = _parse_override(item, cls)
        tp: Any = cls
        for part in parts:
            while get_origin(tp) in (Union, types.UnionType):
                non_none = [a for a in get_args(tp) if a is not type(None)]
                tp = non_none[0] if len(non_none) == 1 else Any
            if tp is Any or get_origin(tp) in (dict, Mapping):
                tp = Any
                break
            tp = get_type_hints(tp)[part]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            continue  # a whole section: its fields' defaults come from the file
        _convert(value, tp, ".".join(parts), f"--set {item}")


def _apply_to_mapping(data: dict[str, Any], overrides: Sequence[str], cls: type) -> dict[str, Any]:
    for item in overrides:
        parts, value = _parse_override(item, cls)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                raise ConfigError(f"--set {item!r}: {part} is not a mapping")
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
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i])} is not a section")
        hints = get_type_hints(tp)
        if part not in hints:
            raise ConfigError(
                f"--set {item!r}: unknown key {'.'.join(parts[: i + 1])!r}; allowed: {sorted(hints)}"
            )
        tp = hints[part]


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Returns a copy of the dataclass ``cfg`` with ``key.path=value`` overrides applied and validated."""
    data = _apply_to_mapping(to_mapping(cfg), overrides, type(cfg))
    return from_mapping(type(cfg), data, source=_Origin(None, _override_keys(overrides)))


def to_mapping(cfg: Any) -> Any:
    """Converts a config dataclass (recursively) into plain YAML-safe Python values."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_mapping(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_mapping(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: to_mapping(v) for k, v in cfg.items()}
    return cfg

