"""The sparse arch: sharded EmbeddingBagCollection -> pooled embeddings in a fixed feature order.

Legend: B instances, F sparse features, S the sum of their embedding dims.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from smes_rec.data.schema import TableSpec

__all__ = ["SparseArch", "TableSpec", "make_embedding_bag_collection"]


def make_embedding_bag_collection(
    tables: Sequence[TableSpec], device: torch.device | str = "meta"
) -> EmbeddingBagCollection:
    """Builds a sum-pooled EmbeddingBagCollection, on the meta device by default so DMP materialises only shards.

    Args:
        tables: One entry per table; features listed on one table share it.
        device: Where to allocate the weights.

    Returns:
        The EmbeddingBagCollection.
    """
    configs = [
        EmbeddingBagConfig(
            name=t.name,
            num_embeddings=t.num_embeddings,
            embedding_dim=t.dim,
            feature_names=list(t.feature_names),
            pooling=PoolingType.SUM,
        )
        for t in tables
    ]
    return EmbeddingBagCollection(tables=configs, device=torch.device(device))


class SparseArch(nn.Module):
    """Looks up and pools every sparse feature, returning them concatenated in ``feature_names`` order.

    The order is fixed here, never taken from the EBC's output: a sharded EBC orders its keys by sharding plan.

    Args:
        embedding_bag_collection: The (possibly sharded) EBC.
        feature_names: The order of the concatenated output.
    """

    def __init__(self, embedding_bag_collection: EmbeddingBagCollection, feature_names: Sequence[str]):
        super().__init__()
        self.embedding_bag_collection = embedding_bag_collection
        self.feature_names = list(feature_names)
        self.out_features = sum(
            cfg.embedding_dim * len(cfg.feature_names) for cfg in embedding_bag_collection.embedding_bag_configs()
        )

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """Returns pooled embeddings ``[B, S]``."""
        pooled: KeyedTensor = self.embedding_bag_collection(features)
        return KeyedTensor.regroup([pooled], [self.feature_names])[0]
