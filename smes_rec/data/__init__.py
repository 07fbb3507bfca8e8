"""Data: the batch contract, schema-driven readers and the KeyedJaggedTensor pipeline.

The flow, one module per step: ``schema`` → ``files`` → ``cells`` → ``joins`` → ``features`` → ``splits`` /
``fitting`` → ``source`` → ``packing`` → ``loader`` (see docs/design.md §1).

Typical use::

    from smes_rec.data import DataConfig, build_dataloader
    loader = build_dataloader(DataConfig(), "train", rank, world_size)   # built-in synthetic data
    for batch in loader: ...                                               # smes_rec.data.Batch
"""

from smes_rec.data.batch import Batch
from smes_rec.data.config import DataConfig, SplitConfig, SyntheticConfig
from smes_rec.data.features import FeatureProcessor
from smes_rec.data.fitted import FittedTransform, TransformError, load_fitted_transform
from smes_rec.data.loader import BatchLoader, build_dataloader
from smes_rec.data.schema import (
    DataError,
    DatasetSchema,
    DenseFeature,
    Join,
    SparseFeature,
    TableSpec,
    Task,
    load_schema,
)
from smes_rec.data.source import DataSource
from smes_rec.data.synthetic import generate as generate_synthetic
from smes_rec.data.synthetic import synthetic_schema

__all__ = [
    "Batch",
    "BatchLoader",
    "DataConfig",
    "DataError",
    "DataSource",
    "DatasetSchema",
    "DenseFeature",
    "FeatureProcessor",
    "FittedTransform",
    "Join",
    "SparseFeature",
    "SplitConfig",
    "SyntheticConfig",
    "TableSpec",
    "Task",
    "TransformError",
    "build_dataloader",
    "generate_synthetic",
    "load_fitted_transform",
    "load_schema",
    "synthetic_schema",
]
