"""Adapts the schema-driven batch loaders to the training loop's DataSource protocol (``train/pipeline.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist

from smes_rec.data.batch import Batch
from smes_rec.data.config import DataConfig
from smes_rec.data.fitted import FittedTransform
from smes_rec.data.loader import BatchLoader, build_dataloader
from smes_rec.data.source import DataSource

__all__ = ["LoaderSource"]


class LoaderSource:
    """One rank's view of a data set: its shape, and resumable batch iterators per split.

    Rank 0 opens the data first (generating the synthetic data or fitting the transform into the cache), then the
    others read what it wrote, so no two processes write the same cache files.

    Args:
        cfg: The data config.
        rank: This rank.
        world_size: The number of ranks.
        fitted: The transform fitted at training (from a checkpoint): used as it is. None: fit it on the train
            split (a new training run).

    Attributes:
        fitted: The fitted transform the batches are built with (stored with every checkpoint).
    """

    def __init__(self, cfg: DataConfig, rank: int = 0, world_size: int = 1, fitted: FittedTransform | None = None):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        if rank == 0:
            self.source = DataSource.open(cfg, fitted)
            self.fitted = self.source.fitted_transform()
        if dist.is_initialized():
            dist.barrier()
        if rank != 0:
            self.source = DataSource.open(cfg, fitted)
            self.fitted = self.source.fitted_transform()
        schema = self.source.schema
        self.task_names = schema.task_names
        self.feature_names = schema.sparse_feature_names
        self.tables = tuple(schema.tables(self.fitted.vocab_sizes()))
        self.num_dense = schema.num_dense
        self.has_groups = schema.group is not None
        self._loaders: dict[str, BatchLoader] = {}

    def loader(self, split: str) -> BatchLoader:
        """The (reused) loader of ``split`` for this rank."""
        if split not in self._loaders:
            self._loaders[split] = build_dataloader(self.cfg, split, self.rank, self.world_size, source=self.source)
        return self._loaders[split]

    def num_batches(self, split: str) -> int:
        """This rank's batches of ``split`` per epoch (the loader's epoch plan gives every rank the same number)."""
        return len(self.loader(split))

    def batches(self, split: str, epoch: int, skip: int) -> Iterator[Batch]:
        """This rank's batches of ``split`` in ``epoch``'s order, from batch ``skip`` on."""
        loader = self.loader(split)
        loader.load_state_dict({"epoch": epoch, "batch": skip})
        return iter(loader)
