"""quiet_third_party filters only the messages it names and leaves the root logger alone; fbgemm's dense embedding
lookup, whose "autograd kernel was not registered" warning it filters, has exact gradients (the README's
Troubleshooting section cites this test)."""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from fbgemm_gpu.split_table_batched_embeddings_ops_common import PoolingMode
from fbgemm_gpu.split_table_batched_embeddings_ops_training import DenseTableBatchedEmbeddingBagsCodegen

from smes_rec.utils.logging import FBGEMM_DENSE_LOOKUP_WARNING, quiet_third_party

TABLES = [(10, 4), (7, 8)]  # (rows, dim)
FEATURE_TABLE = [0, 1, 0]  # three features, two sharing table 0 (as torchrec's shared tables do)


class Lookup(NamedTuple):
    """The dense TBE's output and weight gradients, and the plain-PyTorch ones for the same ids."""

    out: torch.Tensor
    ref_out: torch.Tensor
    grads: list[torch.Tensor]
    ref_grads: list[torch.Tensor]


def _dense_lookup(pooling: PoolingMode) -> Lookup:
    """The dense (data-parallel) TBE forward and backward, and the same lookup with ``F.embedding_bag``."""
    torch.manual_seed(0)
    tbe = DenseTableBatchedEmbeddingBagsCodegen(TABLES, feature_table_map=FEATURE_TABLE, pooling_mode=pooling,
                                                use_cpu=True)
    with torch.no_grad():
        tbe.weights.copy_(torch.randn_like(tbe.weights))
    B = 5
    lengths_FB = torch.tensor([2, 0, 3, 1, 1, 4, 2, 1, 0, 2, 1, 3, 0, 2, 1])  # feature-major, as in a KJT
    rows_N = torch.tensor([TABLES[t][0] for t in FEATURE_TABLE]).repeat_interleave(B).repeat_interleave(lengths_FB)
    indices_N = (torch.rand(int(lengths_FB.sum())) * rows_N).long()
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths_FB.cumsum(0)])
    out_BX = tbe(indices_N, offsets)
    grad_BX = torch.randn_like(out_BX)
    out_BX.backward(grad_BX)
    sizes = [r * d for r, d in TABLES]
    grads = [g.view(r, d) for g, (r, d) in zip(tbe.weights.grad.split(sizes), TABLES, strict=True)]

    leaves = [w.detach().clone().requires_grad_(True) for w in tbe.split_embedding_weights()]
    mode = "sum" if pooling == PoolingMode.SUM else "mean"
    pooled = []
    for f, t in enumerate(FEATURE_TABLE):
        start, end = int(offsets[f * B]), int(offsets[(f + 1) * B])
        pooled.append(F.embedding_bag(indices_N[start:end], leaves[t], offsets[f * B:(f + 1) * B] - start, mode=mode))
    ref_out_BX = torch.cat(pooled, dim=1)
    ref_out_BX.backward(grad_BX)
    return Lookup(out_BX.detach(), ref_out_BX.detach(), grads, [w.grad for w in leaves])


@pytest.mark.parametrize("pooling", [PoolingMode.SUM, PoolingMode.MEAN])
def test_dense_embedding_lookup_warns_but_its_gradients_are_exact(pooling: PoolingMode) -> None:
    # fbgemm registers this op's CPU kernel with an autograd Function inside it and nothing on the Autograd key, so
    # PyTorch's fallback warns on backward; the gradient still comes from fbgemm's own backward, checked here
    # against plain PyTorch.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lookup = _dense_lookup(pooling)
    assert any("dense_embedding_codegen_lookup_function" in str(w.message)
               and "autograd kernel was not registered" in str(w.message) for w in caught)
    torch.testing.assert_close(lookup.out, lookup.ref_out)
    for grad, ref_grad in zip(lookup.grads, lookup.ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad)


def test_quiet_third_party_filters_exactly_the_dense_lookup_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        _dense_lookup(PoolingMode.SUM)
        warnings.warn("fbgemm::other_op: an autograd kernel was not registered to the Autograd key(s)", UserWarning,
                      stacklevel=1)
        warnings.warn("something else from the same place", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not any(FBGEMM_DENSE_LOOKUP_WARNING in m for m in messages)
    assert any(m.startswith("fbgemm::other_op") for m in messages)
    assert "something else from the same place" in messages


def test_quiet_third_party_leaves_the_root_logger_alone() -> None:
    root = logging.getLogger()
    level = root.level
    quiet_third_party()
    assert root.level == level
