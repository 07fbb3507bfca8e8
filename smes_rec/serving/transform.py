"""The frozen feature transform: everything that turns a raw row into the tensors the model was trained on.

It is the schema (columns, hashing and bucket boundaries of every sparse feature, fill and transform of every dense
feature, side-table joins) plus what was fitted on the training split (``standardize`` means and standard
deviations). A package stores it as ``transform/transform.json`` with copies of the side tables, so scoring never
reads the training data and never refits anything on the data being scored.

This module is the one place that obtains the fitted values from a run (:func:`fitted_transform`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smes_rec.data.features import ColumnPlan, FeatureProcessor
from smes_rec.data.readers import resolve_join
from smes_rec.data.schema import DatasetSchema, with_data_root
from smes_rec.data.source import DataSource
from smes_rec.utils.config import from_mapping, to_mapping

__all__ = ["TRANSFORM_VERSION", "FrozenTransform", "fitted_transform", "load_transform", "save_transform"]

TRANSFORM_VERSION = 1


@dataclass(frozen=True)
class FrozenTransform:
    """A schema with the statistics fitted on its training split.

    Attributes:
        schema: The data schema (absolute ``data_root``; side tables resolve against it).
        dense_stats: ``name -> (mean, std)`` for every ``standardize`` feature without fixed statistics.
    """

    schema: DatasetSchema
    dense_stats: Mapping[str, tuple[float, float]]

    def processor(self, plan: ColumnPlan) -> FeatureProcessor:
        """The data pipeline's feature processor with these statistics (nothing is fitted)."""
        missing = [f.name for f in self.schema.dense_to_fit if f.name not in self.dense_stats]
        if missing:
            raise ValueError(f"the frozen transform has no standardisation statistics for {missing}")
        return FeatureProcessor(self.schema, plan, self.dense_stats)


def fitted_transform(source: DataSource) -> FrozenTransform:
    """The transform a run was trained with.

    The statistics are those the training run itself used: the data pipeline's train-split statistics of the
    run's configured data (``DataSource.dense_stats``, cached and deterministic), never the data being scored.

    Args:
        source: The run's data source (its schema, files and split as configured for training).

    Returns:
        The frozen transform.
    """
    return FrozenTransform(source.schema, dict(source.dense_stats()))


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
        "dense_stats": {k: [float(v[0]), float(v[1])] for k, v in transform.dense_stats.items()},
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
    stats = {k: (float(v[0]), float(v[1])) for k, v in doc["dense_stats"].items()}
    return FrozenTransform(schema, stats)
