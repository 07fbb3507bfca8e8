"""Packing processed rows into ready batches: row shuffle, KJT layout and offsets, with ``torch.ops.fbgemm`` kernels.

A DataLoader worker packs a whole *block* (many batches) at once into a handful of large tensors laid out batch by
batch, so that handing it to the main process moves a few shared-memory tensors instead of hundreds, and each
``Batch`` is then a set of zero-copy views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from smes_rec.data.batch import Batch
from smes_rec.data.features import Columns

__all__ = ["PackedBlock", "pack_block", "pad_columns"]


@dataclass
class PackedBlock:
    """``nb`` batches of ``B`` rows with ``F`` sparse features, ``D`` dense features and ``T`` tasks.

    Attributes:
        keys: The KJT keys (sparse feature names).
        values: All ids, batch after batch; inside a batch key-major (the KJT layout).
        lengths_nbFB: ``[nb, F * B]`` int32 KJT lengths per batch.
        offsets_nbFB1: ``[nb, F * B + 1]`` int32 KJT offsets per batch.
        value_starts: ``nb + 1`` offsets of each batch's ids in ``values``.
        length_per_key: Per batch, the number of ids of each key (so KJTs need not compute it).
        dense_nbBD: ``[nb, B, D]`` float32.
        labels_nbTB: ``[nb, T, B]`` float32.
        weights_nbTB: ``[nb, T, B]`` float32.
        group_ids_nbB: ``[nb, B]`` int64.
    """

    keys: tuple[str, ...]
    values: torch.Tensor
    lengths_nbFB: torch.Tensor
    offsets_nbFB1: torch.Tensor
    value_starts: tuple[int, ...]
    length_per_key: tuple[tuple[int, ...], ...]
    dense_nbBD: torch.Tensor
    labels_nbTB: torch.Tensor
    weights_nbTB: torch.Tensor
    group_ids_nbB: torch.Tensor

    @property
    def num_batches(self) -> int:
        """nb."""
        return self.dense_nbBD.size(0)

    def batch(self, i: int) -> Batch:
        """Batch ``i`` as zero-copy views."""
        lpk = list(self.length_per_key[i])
        kjt = KeyedJaggedTensor(
            keys=list(self.keys),
            values=self.values[self.value_starts[i] : self.value_starts[i + 1]],
            lengths=self.lengths_nbFB[i],
            offsets=self.offsets_nbFB1[i],
            stride=self.dense_nbBD.size(1),
            length_per_key=lpk,
            offset_per_key=np.concatenate([[0], np.cumsum(lpk, dtype=np.int64)]).tolist(),
        )
        return Batch(
            dense_features=self.dense_nbBD[i],
            sparse_features=kjt,
            labels=self.labels_nbTB[i],
            weights=self.weights_nbTB[i],
            group_ids=self.group_ids_nbB[i],
        )

    def pin_memory(self) -> PackedBlock:
        """A copy in pinned memory (called by the DataLoader's pin-memory thread)."""
        return PackedBlock(
            self.keys, self.values.pin_memory(), self.lengths_nbFB.pin_memory(), self.offsets_nbFB1.pin_memory(),
            self.value_starts, self.length_per_key, self.dense_nbBD.pin_memory(), self.labels_nbTB.pin_memory(),
            self.weights_nbTB.pin_memory(), self.group_ids_nbB.pin_memory(),
        )


def pad_columns(cols: Columns, num_rows: int) -> Columns:
    """Appends padding rows up to ``num_rows``: no ids, zero dense features and labels, weight 0, group id -1."""
    pad = num_rows - cols.num_rows
    if pad <= 0:
        return cols
    return Columns(
        lengths=[np.concatenate([lf, np.zeros(pad, np.int32)]) for lf in cols.lengths],
        values=list(cols.values),
        dense=np.concatenate([cols.dense, np.zeros((pad, cols.dense.shape[1]), np.float32)]),
        labels=np.concatenate([cols.labels, np.zeros((cols.labels.shape[0], pad), np.float32)], axis=1),
        weights=np.concatenate([cols.weights, np.zeros((cols.weights.shape[0], pad), np.float32)], axis=1),
        group_ids=np.concatenate([cols.group_ids, np.full(pad, -1, np.int64)]),
    )


def pack_block(cols: Columns, keys: Sequence[str], batch_size: int, perm_N: np.ndarray | None = None) -> PackedBlock:
    """Packs ``N = nb * B`` processed rows into ``nb`` batches, optionally in the row order ``perm_N``.

    The sparse part is two fbgemm kernels: ``permute_1D_sparse_data`` reorders rows of jagged features (fixed
    one-id features use a plain gather), then again, on whole per-(key, batch) segments, turns the feature-major
    layout into batch-major/key-major; ``asynchronous_complete_cumsum`` turns lengths into offsets.

    Args:
        cols: ``N`` processed rows; ``N`` must be a multiple of ``batch_size``.
        keys: The sparse feature names (the order of ``cols.lengths``).
        batch_size: B.
        perm_N: Optional ``[N]`` row order.

    Returns:
        The packed block.
    """
    n, b = cols.num_rows, batch_size
    if n % b:
        raise ValueError(f"{n} rows are not a whole number of batches of {b}")
    nb, f_count = n // b, len(keys)
    perm_t = torch.from_numpy(perm_N.astype(np.int64)) if perm_N is not None else None
    lengths_F, values_F = [], []
    all_single = True
    for lf, vf in zip(cols.lengths, cols.values, strict=True):
        l_t, v_t = torch.from_numpy(lf), torch.from_numpy(vf)
        single = len(vf) == n and lf.min(initial=1) == 1  # exactly one id per row
        all_single &= single
        if perm_t is not None:
            if single:  # a plain gather
                v_t = v_t[perm_t]
            else:
                l_t, v_t, _ = torch.ops.fbgemm.permute_1D_sparse_data(perm_t.int(), l_t, v_t, None, len(vf))
        lengths_F.append(l_t)
        values_F.append(v_t)
    if f_count:
        lengths_FN = torch.stack(lengths_F)
        seg_Fnb = lengths_FN.view(f_count, nb, b).sum(-1, dtype=torch.int64)
        values = torch.cat(values_F)
        if all_single:
            values = values.view(f_count, nb, b).transpose(0, 1).reshape(-1)
        else:
            # Segment (f, i) holds the ids of key f in batch i; reorder the segments to (i, f).
            order = (torch.arange(f_count).view(1, f_count) * nb + torch.arange(nb).view(nb, 1)).reshape(-1)
            _, values, _ = torch.ops.fbgemm.permute_1D_sparse_data(
                order.int(), seg_Fnb.reshape(-1).int(), values, None, len(values)
            )
        lengths_nbFB = lengths_FN.view(f_count, nb, b).transpose(0, 1).reshape(nb, f_count * b).contiguous()
        # One cumsum over the whole block (the batched kernel is several times slower on CPU); each batch's
        # offsets are then a window of it minus the window's start, which is also where its ids start.
        fb = f_count * b
        flat = lengths_nbFB.view(-1)
        if int(seg_Fnb.sum()) >= 2**31:  # int32 would overflow (a huge block of long lists)
            flat = flat.to(torch.int64)
        total = torch.ops.fbgemm.asynchronous_complete_cumsum(flat)
        starts_t = total[::fb]
        offsets_nbFB1 = (total.as_strided((nb, fb + 1), (fb, 1)) - starts_t[:nb, None]).to(torch.int32)
        starts = starts_t.tolist()
        length_per_key = tuple(tuple(r) for r in seg_Fnb.t().tolist())
    else:
        values = torch.zeros(0, dtype=torch.int64)
        lengths_nbFB = torch.zeros(nb, 0, dtype=torch.int32)
        offsets_nbFB1 = torch.zeros(nb, 1, dtype=torch.int32)
        starts, length_per_key = [0] * (nb + 1), tuple(() for _ in range(nb))
    rows = perm_N if perm_N is not None else slice(None)
    dense = torch.from_numpy(np.ascontiguousarray(cols.dense[rows])).view(nb, b, -1)
    labels = torch.from_numpy(cols.labels[:, rows]).view(-1, nb, b).transpose(0, 1).contiguous()
    weights = torch.from_numpy(cols.weights[:, rows]).view(-1, nb, b).transpose(0, 1).contiguous()
    groups = torch.from_numpy(np.ascontiguousarray(cols.group_ids[rows])).view(nb, b)
    return PackedBlock(
        tuple(keys), values, lengths_nbFB, offsets_nbFB1, tuple(int(s) for s in starts), length_per_key,
        dense, labels, weights, groups,
    )
