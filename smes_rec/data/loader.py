"""The batch loader: a deterministic, rank-sharded, resumable epoch plan executed by DataLoader workers.

How an epoch is cut (all of it is decided in the main process, from row counts alone, before reading anything):

1. The units (Parquet row groups, CSV line runs) that hold rows of the split are listed in file order; for the
   shuffled train split they are permuted with ``(seed, epoch)``. Every rank computes the same list.
2. The split's rows, in that order, form one sequence of ``S`` rows. Rank ``r`` of ``W`` takes a contiguous slice:
   train: ``S // W`` rows each, of which the whole batches are used (at most ``W - 1 + W * (B - 1)`` rows of an
   epoch are dropped, different ones each epoch when shuffled); valid/test (``pad_eval``): ``ceil(S / W)`` rows each,
   padded to whole batches with rows of weight 0 and group id -1, so every row is evaluated exactly once. All ranks
   yield the same number of batches, as collective training needs.
3. A rank's slice is cut into blocks of ``block_rows`` (whole batches). A block is a list of (unit, row range)
   pieces; a DataLoader worker reads them (only this rank's rows), processes them, shuffles rows within the block
   (train) with a seed derived from ``(seed, epoch, rank, block)``, and packs whole batches (``packing.py``).

The DataLoader is map-style over blocks and returns them in order, so the batch sequence is a function of
``(data, seed, epoch, world_size, rank, batch_size, block_rows)`` only: not of ``num_workers`` or timing. Resuming
from batch ``k`` starts at block ``k // batches_per_block`` and drops the first ``k % batches_per_block`` batches of
it, without reading any earlier block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from smes_rec.data.batch import Batch
from smes_rec.data.config import SPLITS, DataConfig
from smes_rec.data.features import Columns
from smes_rec.data.packing import PackedBlock, pack_block, pad_columns
from smes_rec.data.source import DataSource

__all__ = ["BatchLoader", "BlockSpec", "Piece", "build_dataloader", "plan_epoch"]


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` among the split's rows of one unit."""

    unit: int
    start: int
    stop: int


@dataclass(frozen=True)
class BlockSpec:
    """One block of an epoch plan.

    Attributes:
        pieces: The rows to read, in order.
        num_batches: Whole batches in the block (padding included).
        shuffle_seed: Seed of the row permutation inside the block; None keeps the order.
    """

    pieces: tuple[Piece, ...]
    num_batches: int
    shuffle_seed: int | None


@dataclass(frozen=True)
class EpochPlan:
    """The blocks of one rank for one epoch.

    Attributes:
        blocks: The blocks in order.
        num_batches: Batches in the epoch.
        num_rows: Real (not padding) rows in the epoch.
        batches_per_block: Batches in every block but possibly the last.
    """

    blocks: tuple[BlockSpec, ...]
    num_batches: int
    num_rows: int
    batches_per_block: int


def plan_epoch(
    counts: np.ndarray,
    batch_size: int,
    rank: int,
    world_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    block_rows: int,
    drop_last: bool,
) -> EpochPlan:
    """Cuts one rank's share of an epoch into blocks (see the module docstring).

    Args:
        counts: ``[U]`` rows of the split in each unit.
        batch_size: B.
        rank: This rank.
        world_size: W.
        shuffle: Permute units and rows within blocks.
        seed: The shuffle seed.
        epoch: The epoch (changes the permutation).
        block_rows: Rows per block (rounded down to whole batches, at least one batch).
        drop_last: Drop rows that do not fill a whole batch (train); otherwise pad them.

    Returns:
        The plan.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    order = np.flatnonzero(counts > 0)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(order)
    ends = np.cumsum(counts[order])
    total = int(ends[-1]) if len(ends) else 0
    if drop_last:
        per_rank = total // world_size
        num_batches = per_rank // batch_size
        start = rank * per_rank
        stop = start + num_batches * batch_size
    else:
        per_rank = math.ceil(total / world_size)
        num_batches = math.ceil(per_rank / batch_size)
        start = min(rank * per_rank, total)
        stop = min(start + per_rank, total)
    per_block = max(1, block_rows // batch_size)
    blocks: list[BlockSpec] = []
    for first in range(0, num_batches, per_block):
        nbat = min(per_block, num_batches - first)
        lo = min(start + first * batch_size, stop)
        hi = min(lo + nbat * batch_size, stop)
        pieces = []
        k = int(np.searchsorted(ends, lo, side="right"))
        pos = lo
        while pos < hi:
            unit_start = int(ends[k - 1]) if k else 0
            take = min(hi, int(ends[k])) - pos
            pieces.append(Piece(int(order[k]), pos - unit_start, pos - unit_start + take))
            pos += take
            k += 1
        block_seed = None
        if shuffle:
            block_seed = int(np.random.SeedSequence([seed, epoch, rank, len(blocks)]).generate_state(1)[0])
        blocks.append(BlockSpec(tuple(pieces), nbat, block_seed))
    return EpochPlan(tuple(blocks), num_batches, stop - start, per_block)


class BlockDataset(Dataset):
    """Map-style dataset whose keys are ``BlockSpec``s: reads, processes and packs one block per item."""

    def __init__(self, source: DataSource, split: str, batch_size: int) -> None:
        self.source, self.split, self.batch_size = source, split, batch_size

    def __getitem__(self, spec: BlockSpec) -> PackedBlock:
        return load_block(self.source, self.split, self.batch_size, spec)


def load_block(source: DataSource, split: str, batch_size: int, spec: BlockSpec) -> PackedBlock:
    """Reads, processes and packs one block.

    Args:
        source: The data source.
        split: The split.
        batch_size: B.
        spec: The block.

    Returns:
        The packed block of ``spec.num_batches`` batches.
    """
    parts: list[Columns] = []
    cached: tuple[int, object] | None = None
    for piece in spec.pieces:
        if cached is None or cached[0] != piece.unit:
            cached = (piece.unit, source.read_unit(piece.unit))
        table, ctx = source.read(piece.unit, split, piece.start, piece.stop, table=cached[1])
        parts.append(source.processor(table, ctx))
    cols = Columns.concat(parts) if parts else _empty_columns(source)
    real = cols.num_rows
    cols = pad_columns(cols, spec.num_batches * batch_size)
    perm = None
    if spec.shuffle_seed is not None:
        perm = np.random.default_rng(spec.shuffle_seed).permutation(real)
        if real < cols.num_rows:
            perm = np.concatenate([perm, np.arange(real, cols.num_rows)])
    return pack_block(cols, source.schema.sparse_feature_names, batch_size, perm)


def _empty_columns(source: DataSource) -> Columns:
    s = source.schema
    return Columns(
        [np.zeros(0, np.int32) for _ in s.sparse], [np.zeros(0, np.int64) for _ in s.sparse],
        np.zeros((0, s.num_dense), np.float32), np.zeros((s.num_tasks, 0), np.float32),
        np.zeros((s.num_tasks, 0), np.float32), np.zeros(0, np.int64),
    )


def _identity(block: Any) -> Any:
    return block


def _worker_init(_: int) -> None:
    # One core per worker: the pipeline parallelises across workers, not inside them.
    torch.set_num_threads(1)


class _PlanSampler:
    """Yields the blocks of the loader's current plan from its resume point (read when an epoch starts)."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[BlockSpec]:
        plan = self.loader.plan
        return iter(plan.blocks[self.loader._resume // plan.batches_per_block :])

    def __len__(self) -> int:
        plan = self.loader.plan
        return len(plan.blocks) - self.loader._resume // plan.batches_per_block


class BatchLoader:
    """Iterates fixed-size ``Batch``es of one split for one rank, epoch by epoch, resumably.

    Iterating yields the batches of the current epoch from the current position; ``set_epoch`` moves to another
    epoch; ``state_dict``/``load_state_dict`` save and restore ``(epoch, batch)`` so a resumed run continues with
    exactly the batches it had not seen. The underlying ``torch.utils.data.DataLoader`` (map-style over blocks) is
    ``self.dataloader``.

    Args:
        source: The data source.
        split: ``train``, ``valid``, ``test`` or ``all``.
        cfg: The data config (batching, workers, shuffling).
        rank: This rank.
        world_size: The number of ranks.
        epoch: The first epoch.
        start_batch: Batches of that epoch to skip (already consumed).
    """

    def __init__(self, source: DataSource, split: str, cfg: DataConfig, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, start_batch: int = 0) -> None:
        self.source, self.split, self.cfg = source, split, cfg
        self.rank, self.world_size = rank, world_size
        self.train = split == "train"
        self.counts = source.split_counts(split)
        # Side tables and dense statistics are prepared here, once, so forked workers inherit them.
        source.processor  # noqa: B018
        self._epoch = epoch
        self._plan: EpochPlan | None = None
        self._resume = start_batch
        self._position = start_batch
        use_cuda = cfg.pin_memory and torch.cuda.is_available()
        workers = cfg.num_workers
        self.dataloader = DataLoader(
            BlockDataset(source, split, cfg.batch_size),
            batch_size=None,
            sampler=_PlanSampler(self),
            num_workers=workers,
            collate_fn=_identity,
            pin_memory=use_cuda,
            prefetch_factor=cfg.prefetch_factor if workers else None,
            persistent_workers=False,  # persistent workers would be inherited by the next loader's forks
            worker_init_fn=_worker_init if workers else None,
            # Its own generator: creating an iterator draws a worker base seed, which must not advance the global
            # RNG (a resumed run would otherwise continue with a different random stream).
            generator=torch.Generator().manual_seed(0 if cfg.seed is None else cfg.seed),
        )
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} is outside the epoch's {len(self)} batches")
        if self.train and len(self) == 0:
            raise ValueError(
                f"the {split} split has {int(self.counts.sum())} rows: too few for {world_size} rank(s) x batch size "
                f"{cfg.batch_size}"
            )

    @property
    def plan(self) -> EpochPlan:
        """This rank's plan for the current epoch."""
        if self._plan is None:
            self._plan = plan_epoch(
                self.counts, self.cfg.batch_size, self.rank, self.world_size,
                shuffle=self.cfg.shuffle and self.train, seed=0 if self.cfg.seed is None else self.cfg.seed,
                epoch=self._epoch,
                block_rows=self.cfg.block_rows, drop_last=self.train or not self.cfg.pad_eval,
            )
        return self._plan

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch

    @property
    def num_rows(self) -> int:
        """Real (not padding) rows this rank reads per epoch."""
        return self.plan.num_rows

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return self.plan.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Moves to the start of ``epoch`` (a new shuffle for the train split)."""
        if epoch != self._epoch:
            self._plan = None
        self._epoch, self._resume, self._position = epoch, 0, 0

    def state_dict(self) -> dict[str, int]:
        """The position to resume from: the epoch and the number of its batches already yielded.

        A pipeline that prefetches (e.g. ``TrainPipelineSparseDist``) pulls batches before it trains on them; save
        the number of batches actually trained instead and resume with ``load_state_dict`` / ``start_batch``.
        """
        return {"epoch": self._epoch, "batch": self._position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resumes at a position from ``state_dict``: the next batch yielded is batch ``state["batch"]``."""
        self.set_epoch(int(state["epoch"]))
        if not 0 <= int(state["batch"]) <= len(self):
            raise ValueError(f"batch {state['batch']} is outside the epoch's {len(self)} batches")
        self._resume = self._position = int(state["batch"])

    def __iter__(self) -> Iterator[Batch]:
        # The DataLoader iterator (which forks the workers) starts here, in the calling thread, not at the first
        # next(): a consumer such as the eval pipeline pulls batches on a background thread, and forking from a
        # non-main thread while the main thread runs kernels can leave a worker in a broken state.
        return self._batches(iter(self.dataloader))

    def _batches(self, blocks: Iterator[PackedBlock]) -> Iterator[Batch]:
        plan = self.plan
        skip = self._resume % plan.batches_per_block
        self._position = self._resume - skip
        try:
            for block in blocks:
                for i in range(block.num_batches):
                    if skip:
                        skip -= 1
                        self._position += 1
                        continue
                    self._position += 1
                    yield block.batch(i)
        finally:
            if self._position >= plan.num_batches:  # a finished epoch resumes at the start of the next one
                self._epoch += 1
                self._plan = None
                self._resume = self._position = 0
            else:
                self._resume = self._position


def build_dataloader(
    cfg: DataConfig,
    split: str = "train",
    rank: int = 0,
    world_size: int = 1,
    *,
    epoch: int = 0,
    start_batch: int = 0,
    source: DataSource | None = None,
) -> BatchLoader:
    """Builds the batch loader of one split for one rank.

    Args:
        cfg: The data config.
        split: ``train``, ``valid`` or ``test`` (or ``all``: every row, unshuffled, padded).
        rank: This rank (0-based).
        world_size: The number of ranks; each reads only its own share of the rows.
        epoch: The epoch to start at (it seeds the train shuffle).
        start_batch: Batches of that epoch already consumed (resume).
        source: An opened ``DataSource`` to share between loaders (default: ``DataSource.open(cfg)``).

    Returns:
        An iterable of ``Batch`` with ``len()`` batches per epoch, each of exactly ``cfg.batch_size`` rows.
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {[*SPLITS, 'all']}, got {split!r}")
    source = source or DataSource.open(cfg)
    return BatchLoader(source, split, cfg, rank, world_size, epoch, start_batch)
