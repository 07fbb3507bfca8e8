"""Driving a sharded model over batches: the per-epoch batch-count agreement and the eval pipeline.

Sharded embeddings make every batch collective (input all-to-all, DDP gradients), so every rank must run the same
number of batches. The ranks agree on that number once, before an epoch (or an evaluation) starts, from the
counts their data sources announce: one collective per epoch instead of one per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import EvalPipelineSparseDist

from smes_rec.data.batch import Batch
from smes_rec.train.build import DataShape
from smes_rec.train.wrapper import StepOutput

__all__ = ["DataSource", "agree_on_count", "agreed_batches", "bounded", "eval_outputs"]


class DataSource(DataShape, Protocol):
    """Where the loop's batches come from, how many there are, and the shape of the data the model is built for."""

    has_groups: bool  # False: no group column, so GAUC is not available

    def num_batches(self, split: str) -> int:
        """This rank's batches of ``split`` in one epoch (it must yield at least that many)."""
        ...

    def batches(self, split: str, epoch: int, skip: int) -> Iterator[Batch]:
        """This rank's batches of ``split`` in ``epoch``'s order, skipping the first ``skip`` of them."""
        ...


def agree_on_count(count: int, device: torch.device) -> int:
    """The smallest of every rank's ``count``, on every rank (one all-reduce; every rank must call).

    Args:
        count: The batches this rank can run.
        device: A tensor device the default process group's backend accepts (the rank's training device).

    Returns:
        The number of batches every rank runs.
    """
    count_1 = torch.tensor([count], dtype=torch.int64, device=device)
    dist.all_reduce(count_1, op=dist.ReduceOp.MIN)
    return int(count_1.item())


def bounded(batches: Iterator[Batch], count: int) -> Iterator[Batch]:
    """Exactly the first ``count`` batches of ``batches``.

    Raises:
        RuntimeError: The iterator ended before ``count`` batches, although its source announced at least that
            many (the other ranks would wait for this one forever in the next collective).
    """
    for i in range(count):
        batch = next(batches, None)
        if batch is None:
            raise RuntimeError(f"the data source announced {count} batches but yielded only {i}")
        yield batch


def agreed_batches(data: DataSource, split: str, device: torch.device, *, epoch: int = 0, skip: int = 0,
                   limit: int | None = None) -> Iterator[Batch]:
    """This rank's batches of ``split`` from batch ``skip`` of ``epoch`` on, as many as every rank has (every rank
    calls; one collective).

    Args:
        data: The data source.
        split: The split.
        device: This rank's device (for the collective).
        epoch: The epoch (its order).
        skip: Batches of the epoch already consumed.
        limit: At most this many batches (None: to the end of the epoch).

    Returns:
        An iterator over the same number of batches on every rank.
    """
    count = max(0, data.num_batches(split) - skip)
    if limit is not None:
        count = min(count, limit)
    return bounded(data.batches(split, epoch, skip), agree_on_count(count, device))


def eval_outputs(
    model: DistributedModelParallel, batches: Iterator[Batch], device: torch.device
) -> Iterator[StepOutput]:
    """Step outputs of ``model`` over ``batches`` through ``EvalPipelineSparseDist`` (eval mode, no grad).

    ``batches`` must hold the same number of batches on every rank (see :func:`agree_on_count`), and every rank
    must iterate to the end. The model's train/eval mode is restored, and the pipeline detached, once the
    generator finishes or is closed.

    Args:
        model: The sharded model (weights loaded, optimizers or not).
        batches: This rank's batches.
        device: This rank's device.

    Yields:
        One :class:`StepOutput` per batch.
    """
    was_training = model.training
    model.eval()
    # The pipeline never steps its optimizer in eval; it takes the model's own (fused) one for its signature.
    pipeline = EvalPipelineSparseDist(model, model.fused_optimizer, device)
    try:
        with torch.no_grad():
            while True:
                try:
                    out: StepOutput = pipeline.progress(batches)
                except StopIteration:
                    return
                yield out
    finally:
        pipeline.detach()
        model.train(was_training)
