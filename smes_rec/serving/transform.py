"""The frozen feature transform: everything that turns a raw row into the tensors the model was trained on.

It is the schema (columns, id mode -- hashing, vocabulary or identity -- and bucket boundaries of every sparse
feature, fill and transform of every dense feature, side-table joins) plus the
:class:`~smes_rec.data.fitted.FittedTransform` stored in the checkpoint (``standardize`` means and standard
deviations, vocabularies, all fitted on the training split). A package stores it as ``transform/transform.json``
with copies of the side tables, so scoring never reads the training data and never refits anything on the data
being scored.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smes_rec.data.files import resolve_join
from smes_rec.data.fitted import FittedTransform
from smes_rec.data.schema import DatasetSchema, with_data_root
from smes_rec.utils.config import from_mapping, to_mapping

__all__ = ["TRANSFORM_VERSION", "FrozenTransform", "load_transform", "save_transform"]

TRANSFORM_VERSION = 2


@dataclass(frozen=True)
class FrozenTransform:
    """A schema with what was fitted on its training split.

    Attributes:
        schema: The data schema (absolute ``data_root``; side tables resolve against it).
        fitted: The checkpoint's fitted transform (standardisation statistics, vocabularies).
    """

    schema: DatasetSchema
    fitted: FittedTransform


def save_transform(transform: FrozenTransform, folder: str | Path) -> list[Path]:
    """Writes ``transform.json`` and copies of the side tables into ``folder``.

    Args:
        transform: The transform.
        folder: The output folder (created).

    Returns:
        The files written.
    """
    folder = Path(folder)
    (folder / "joins").mkdir(parents=True, exist_ok=True)
    schema, written, joins = transform.schema, [], []
    for i, join in enumerate(schema.joins):
        src = Path(resolve_join(schema, join, i))
        dst = folder / "joins" / f"{i}_{src.name}"
        shutil.copyfile(src, dst)
        written.append(dst)
        joins.append(dataclasses.replace(join, path=f"joins/{dst.name}"))
    frozen = dataclasses.replace(schema, joins=tuple(joins), data_root=None, files=())
    doc = {
        "version": TRANSFORM_VERSION,
        "schema": to_mapping(frozen),
        "fitted": transform.fitted.to_dict(),
    }
    path = folder / "transform.json"
    path.write_text(json.dumps(doc, indent=1))
    return [path, *written]


def load_transform(folder: str | Path) -> FrozenTransform:
    """Reads a transform written by :func:`save_transform` (side tables resolve inside ``folder``)."""
    folder = Path(folder)
    path = folder / "transform.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("version") != TRANSFORM_VERSION:
        raise ValueError(f"{path}: transform version {doc.get('version')!r}, this smes-rec reads {TRANSFORM_VERSION}")
    schema = from_mapping(DatasetSchema, doc["schema"], source=str(path))
    schema = with_data_root(schema, None, base=folder.resolve())
    return FrozenTransform(schema, FittedTransform.from_dict(doc["fitted"], source=f"{path}: fitted"))
