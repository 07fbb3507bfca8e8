"""Data: the batch contract, schema-driven readers and the KeyedJaggedTensor pipeline."""

from smes_rec.data.batch import Batch

__all__ = ["Batch"]
