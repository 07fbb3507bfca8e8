"""The fitted feature transform: every statistic fitted on the train split, frozen and stored with the model.

What a schema leaves to the data is fitted once, at training start, on the *train* split, and from then on belongs
to the model: it is saved in every checkpoint's ``meta.json`` under ``"fitted_transform"`` and reused by evaluation,
prediction and serving, whatever files they read. Nothing is ever recomputed from the data being scored. It holds:

- ``dense``: ``(mean, std)`` of every ``standardize`` feature without a fixed ``mean``/``std`` in the schema;
- ``vocabularies``: per embedding table with ``ids: vocab``, the vocabulary in id order (``values[i]`` has id
  ``i + 1``; id 0 is the out-of-vocabulary id). Integer ids are JSON integers, other ids JSON strings (see
  ``vocab.py`` for the canonical forms).

The JSON form (``to_dict``) is versioned; ``from_dict`` refuses other versions and malformed content by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_VERSION", "META_KEY", "FittedTransform", "TransformError", "load_fitted_transform"]

FORMAT_VERSION = 1
META_KEY = "fitted_transform"  # the key of a checkpoint's meta.json that holds it


class TransformError(ValueError):
    """A stored fitted transform is missing, of another version, malformed, or does not fit the schema."""


@dataclass(frozen=True)
class FittedTransform:
    """Statistics fitted on the train split (immutable; see the module docstring).

    Attributes:
        dense: ``feature name -> (mean, std)`` for the ``standardize`` features fitted on the data.
        vocabularies: ``table name -> values in id order`` for the ``ids: vocab`` tables (``values[i]`` is id
            ``i + 1``; 0 is the out-of-vocabulary id).
        num_rows: The number of train rows it was fitted on (information only).
    """

    dense: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    vocabularies: Mapping[str, tuple[int | str, ...]] = field(default_factory=dict)
    num_rows: int = 0

    def __post_init__(self) -> None:
        for name, (mean, std) in self.dense.items():
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                raise TransformError(f"dense[{name!r}]: mean {mean} / std {std} must be finite with std > 0")

    def vocab_size(self, table: str) -> int:
        """Rows of a vocabulary table's embedding: its values plus the out-of-vocabulary row 0."""
        if table not in self.vocabularies:
            raise TransformError(f"no vocabulary fitted for table {table!r}")
        return len(self.vocabularies[table]) + 1

    def vocab_sizes(self) -> dict[str, int]:
        """``table -> rows`` of every vocabulary table (for ``DatasetSchema.tables``)."""
        return {t: len(v) + 1 for t, v in self.vocabularies.items()}

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form."""
        return {
            "version": FORMAT_VERSION,
            "num_rows": self.num_rows,
            "dense": {k: {"mean": m, "std": s} for k, (m, s) in self.dense.items()},
            "vocabularies": {k: {"oov_id": 0, "values": list(v)} for k, v in self.vocabularies.items()},
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], source: str = "fitted transform") -> FittedTransform:
        """Parses ``to_dict``'s form strictly.

        Args:
            data: The JSON form.
            source: Where it came from, for errors.

        Raises:
            TransformError: Another version, unknown keys or malformed values, naming the key.
        """
        if not isinstance(data, Mapping):
            raise TransformError(f"{source}: expected a mapping, got {type(data).__name__}")
        if data.get("version") != FORMAT_VERSION:
            raise TransformError(f"{source}: version {data.get('version')!r} is not supported (this smes-rec reads "
                                 f"version {FORMAT_VERSION})")
        extra = set(data) - {"version", "num_rows", "dense", "vocabularies"}
        if extra:
            raise TransformError(f"{source}: unknown keys {sorted(extra)}")
        dense: dict[str, tuple[float, float]] = {}
        for name, st in dict(data.get("dense", {})).items():
            if not isinstance(st, Mapping) or set(st) != {"mean", "std"}:
                raise TransformError(f"{source}: dense[{name!r}] must be {{mean, std}}, got {st!r}")
            dense[name] = (float(st["mean"]), float(st["std"]))
        vocabs: dict[str, tuple[int | str, ...]] = {}
        for name, v in dict(data.get("vocabularies", {})).items():
            if not isinstance(v, Mapping) or set(v) != {"oov_id", "values"} or v["oov_id"] != 0:
                raise TransformError(f"{source}: vocabularies[{name!r}] must be {{oov_id: 0, values: [...]}}")
            values = tuple(v["values"])
            if any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in values):
                raise TransformError(f"{source}: vocabularies[{name!r}]: values must be integers or strings")
            if len(set(values)) != len(values):
                raise TransformError(f"{source}: vocabularies[{name!r}]: duplicate values")
            vocabs[name] = values
        try:
            return FittedTransform(dense, vocabs, int(data.get("num_rows", 0)))
        except TransformError as e:
            raise TransformError(f"{source}: {e}") from None


def load_fitted_transform(checkpoint: str | Path) -> FittedTransform | None:
    """The fitted transform stored in a checkpoint folder (``step_XXXXXXXXX``).

    Args:
        checkpoint: The checkpoint folder (holding ``meta.json``).

    Returns:
        The transform, or None for a checkpoint written before transforms were stored (see
        ``smes_rec.evaluation.checkpoint.fitted_transform_for`` for what evaluation does then).

    Raises:
        FileNotFoundError: No ``meta.json`` in the folder.
        TransformError: A stored transform that does not parse.
    """
    meta_path = Path(checkpoint) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{checkpoint}: not a smes-rec checkpoint (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if META_KEY not in meta:
        return None
    return FittedTransform.from_dict(meta[META_KEY], source=f"{meta_path}: {META_KEY}")
