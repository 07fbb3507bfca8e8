"""The training batch: the contract between the data pipeline and TorchRec's train pipelines.

Legend: B instances, D dense features, T tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable


@dataclass
class Batch(Pipelineable):
    """One batch, holding only tensors and a KeyedJaggedTensor (so TorchRec can move and pipeline it).

    Attributes:
        dense_features: ``[B, D]`` float32 dense features (already transformed).
        sparse_features: A KeyedJaggedTensor with one key per sparse feature; all preprocessing (hashing,
            bucketising, offsets) is done by the data pipeline, so the model passes it to the
            EmbeddingBagCollection untouched.
        labels: ``[T, B]`` float32 binary labels.
        weights: ``[T, B]`` float32 per-task example weights.
        group_ids: ``[B]`` int64 group (user) ids, used for GAUC.
    """

    dense_features: torch.Tensor
    sparse_features: KeyedJaggedTensor
    labels: torch.Tensor
    weights: torch.Tensor
    group_ids: torch.Tensor

    @property
    def batch_size(self) -> int:
        """The number of instances B."""
        return self.dense_features.size(0)

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """Returns a copy of the batch on ``device``."""
        return Batch(
            dense_features=self.dense_features.to(device=device, non_blocking=non_blocking),
            sparse_features=self.sparse_features.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            weights=self.weights.to(device=device, non_blocking=non_blocking),
            group_ids=self.group_ids.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        """Marks every tensor as used by ``stream`` (CUDA pipelining)."""
        self.dense_features.record_stream(stream)
        self.sparse_features.record_stream(stream)
        self.labels.record_stream(stream)
        self.weights.record_stream(stream)
        self.group_ids.record_stream(stream)

    def pin_memory(self) -> Batch:
        """Returns a copy in pinned host memory (called by DataLoader with ``pin_memory=True``)."""
        return Batch(
            dense_features=self.dense_features.pin_memory(),
            sparse_features=self.sparse_features.pin_memory(),
            labels=self.labels.pin_memory(),
            weights=self.weights.pin_memory(),
            group_ids=self.group_ids.pin_memory(),
        )
