"""What a resume may change: the run config saved in a checkpoint against the one a resume asks for.

A resume continues the saved run, so everything that defines it must stay: the model, the features and data (and
their fingerprint), the split, the batching and order of the data, the optimizers and the seed. What only says
how long to train, how often to log, validate and checkpoint, how data is loaded and where files go may change
(:data:`SAFE_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["SAFE_KEYS", "ConfigDifference", "ResumeMismatchError", "resume_differences"]

# Dotted keys (or sections, ending in ".") that a resume may change.
SAFE_KEYS = (
    "schedule.",
    "output_dir",
    "device",
    "sharding",
    "data.num_workers",
    "data.pin_memory",
    "data.prefetch_factor",
    "data.cache_dir",
    "data.data_root",
)

_ABSENT = "<absent>"


class ResumeMismatchError(ValueError):
    """A resume asks for a run other than the one its checkpoint holds."""


class ConfigDifference(NamedTuple):
    """One key whose value differs between a checkpoint and a resume."""

    key: str
    saved: Any
    requested: Any


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def _safe(key: str) -> bool:
    return any(key.startswith(s) if s.endswith(".") else key == s for s in SAFE_KEYS)


def resume_differences(
    saved: Mapping[str, Any], requested: Mapping[str, Any], prefix: str = ""
) -> list[ConfigDifference]:
    """Every key outside :data:`SAFE_KEYS` whose value differs, in key order.

    Args:
        saved: The config (or data fingerprint) stored in the checkpoint, as plain data.
        requested: The one the resume runs with, as plain data.
        prefix: Put in front of every key (e.g. ``data_fingerprint.``); keys with a prefix are never safe.

    Returns:
        The differences; a key present on one side only shows ``<absent>`` on the other.
    """
    a, b = _flatten(saved), _flatten(requested)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if not prefix and _safe(key):
            continue
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old != new:
            diffs.append(ConfigDifference(prefix + key, old, new))
    return diffs
