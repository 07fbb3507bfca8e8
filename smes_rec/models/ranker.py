"""The full recommender: sparse arch + dense features -> MultiTaskModel (bottom, arch, towers).

Legend: B instances, D dense features, S pooled embedding width, T tasks.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from smes_rec.models.multitask import MultiTaskModel, MultiTaskOutput
from smes_rec.models.sparse import SparseArch

__all__ = ["Ranker"]


class Ranker(nn.Module):
    """Concatenates pooled embeddings with dense features and runs the dense multi-task model.

    Args:
        sparse_arch: Embeddings of the sparse features.
        dense_model: Bottom -> arch -> towers over ``[B, S + D]``.
    """

    def __init__(self, sparse_arch: SparseArch, dense_model: MultiTaskModel):
        super().__init__()
        self.sparse_arch = sparse_arch
        self.dense_model = dense_model

    def forward(self, dense_features: torch.Tensor, sparse_features: KeyedJaggedTensor) -> MultiTaskOutput:
        """Returns per-task logits ``[T, B]``, the auxiliary loss and the routing decision."""
        pooled_BS = self.sparse_arch(sparse_features)
        return self.dense_model(torch.cat([pooled_BS, dense_features], dim=1))
