"""The serving forward: one request's plain tensors -> per-task probabilities.

Legend: B instances, D dense features, F sparse features, N ids of the request, T tasks.

The input contract (``docs/serving.md``) is the data pipeline's own layout: ``dense_BD`` float32 as the pipeline
transforms it, ``values_N`` int64 bucket ids of every sparse feature, key-major (feature 0's ids of rows 0..B-1,
then feature 1's, ...), and ``lengths_FB`` int32 ids per (feature, row) in the same order. The KeyedJaggedTensor is
built inside, so the module takes only tensors and survives ``torch.jit.script``.
"""

# No `from __future__ import annotations`: fx copies forward's annotations into generated code, and TorchScript
# needs them as real types, not strings.
from collections.abc import Sequence

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from smes_rec.models.ranker import Ranker

__all__ = ["ServingModule"]


class ServingModule(nn.Module):
    """A :class:`~smes_rec.models.ranker.Ranker` behind plain tensors, returning sigmoid probabilities.

    Args:
        ranker: The trained ranker (unsharded; its EBC may be swapped for torchrec's quantized one).
        feature_names: The sparse features in KJT key order (the order of ``lengths_FB``).
    """

    def __init__(self, ranker: Ranker, feature_names: Sequence[str]):
        super().__init__()
        self.ranker = ranker
        self.feature_names = list(feature_names)

    def forward(self, dense_BD: torch.Tensor, values_N: torch.Tensor, lengths_FB: torch.Tensor) -> torch.Tensor:
        """Returns float32 probabilities ``[T, B]``."""
        kjt = KeyedJaggedTensor(keys=self.feature_names, values=values_N, lengths=lengths_FB)
        return torch.sigmoid(self.ranker(dense_BD, kjt).logits.float())
