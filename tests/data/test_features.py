"""Row processing and the KJT layout, against expectations built by hand (ids via a reference hash)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from smes_rec.data.config import DataConfig
from smes_rec.data.features import Columns
from smes_rec.data.loader import build_dataloader
from smes_rec.data.packing import pack_block, pad_columns
from tests.data.helpers import write_schema

_M = (1 << 64) - 1


def documented_bucket(value: int | str, n: int) -> int:
    """The documented hash, written out: fmix64 of the integer (or of FNV-1a of the text), top 32 bits scaled."""
    if isinstance(value, int):
        x = value & _M
    else:
        x = 0xCBF29CE484222325
        for byte in value.encode():
            x = ((x ^ byte) * 0x100000001B3) & _M
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M
    x ^= x >> 33
    return ((x >> 32) * n) >> 32


CSV = """user,item,tags,price,age,click,rating,w
10,7,3|5,12.5,30,1,4.5,2
20,8,,,40,0,2.0,1
10,7,5,0,,1,3.1,1
30,x9,3| 3 |9,150,25,0,5.0,0.5
20,8,,1e3,31,1,1.0,1
"""

SCHEMA = {
    "files": ["rows.csv"],
    "group": "user",
    "strip": True,
    "tasks": [
        {"name": "click", "column": "click", "positive": [1], "negative": [0]},
        {"name": "good", "column": "rating", "threshold": 3.5, "weight": 2.0, "weight_column": "w"},
    ],
    "sparse": [
        {"name": "item", "column": "item", "num_embeddings": 1000, "dim": 8},
        {"name": "tags", "column": "tags", "num_embeddings": 50, "dim": 4, "separator": "|"},
        {"name": "price_bucket", "column": "price", "dim": 4, "boundaries": [1, 10, 100]},
    ],
    "dense": [
        {"name": "price", "column": "price", "transform": "log1p", "fill": 0},
        {"name": "age", "column": "age", "transform": "standardize", "mean": 30, "std": 5, "fill": 30},
        {"name": "rating", "column": "rating"},
    ],
}


def _loader(tmp_path: Path, batch_size: int, **cfg):
    (tmp_path / "rows.csv").write_text(CSV)
    write_schema(tmp_path / "schema.yaml", SCHEMA)
    config = DataConfig(schema=str(tmp_path / "schema.yaml"), batch_size=batch_size, num_workers=0, shuffle=False,
                        cache_dir=str(tmp_path / "cache"), **cfg)
    return build_dataloader(config, "all")


def test_batch_matches_hand_built_expectations(tmp_path: Path) -> None:
    (batch,) = list(_loader(tmp_path, 5))
    kjt = batch.sparse_features
    assert kjt.keys() == ["item", "tags", "price_bucket"]
    assert kjt.stride() == 5
    # Missing cells give empty bags; " 3 " is stripped; boundaries [1, 10, 100] count the boundaries <= value.
    expected_lengths = [1, 1, 1, 1, 1, 2, 0, 1, 3, 0, 1, 0, 1, 1, 1]  # item, tags, price_bucket
    expected_values = [
        *[documented_bucket(v, 1000) for v in (7, 8, 7, "x9", 8)],
        *[documented_bucket(v, 50) for v in (3, 5, 5, 3, 3, 9)],
        *[2, 0, 3, 3],
    ]
    assert kjt.lengths().tolist() == expected_lengths
    assert kjt.offsets().tolist() == np.concatenate([[0], np.cumsum(expected_lengths)]).tolist()
    assert kjt.values().tolist() == expected_values
    assert kjt.values().dtype == torch.int64
    assert kjt.length_per_key() == [5, 6, 4]
    assert kjt["tags"].lengths().tolist() == [2, 0, 1, 3, 0]
    expected_dense = [
        [math.log1p(12.5), 0.0, 4.5],
        [0.0, 2.0, 2.0],  # price missing -> fill 0 -> log1p(0); age (40 - 30) / 5
        [0.0, 0.0, 3.1],  # age missing -> fill 30 -> 0
        [math.log1p(150), -1.0, 5.0],
        [math.log1p(1000), 0.2, 1.0],
    ]
    torch.testing.assert_close(batch.dense_features, torch.tensor(expected_dense, dtype=torch.float32))
    assert batch.labels.tolist() == [[1, 0, 1, 0, 1], [1, 0, 0, 1, 0]]
    assert batch.weights.tolist() == [[1, 1, 1, 1, 1], [4, 2, 2, 1, 2]]
    assert batch.group_ids.tolist() == [10, 20, 10, 30, 20]
    assert batch.labels.dtype == batch.weights.dtype == batch.dense_features.dtype == torch.float32
    assert batch.group_ids.dtype == torch.int64


def test_padding_rows_are_empty_with_zero_weight(tmp_path: Path) -> None:
    batches = list(_loader(tmp_path, 2))
    assert len(batches) == 3 and all(b.batch_size == 2 for b in batches)
    last = batches[-1]
    assert last.group_ids.tolist() == [20, -1]
    assert last.weights[:, 1].tolist() == [0, 0] and last.labels[:, 1].tolist() == [0, 0]
    assert last.dense_features[1].tolist() == [0, 0, 0]
    kjt = last.sparse_features
    assert kjt.lengths().tolist() == [1, 0, 0, 0, 1, 0]
    assert kjt.values().tolist() == [documented_bucket(8, 1000), 3]
    # The first two batches hold rows 0-3 in order.
    assert [g for b in batches[:2] for g in b.group_ids.tolist()] == [10, 20, 10, 30]
    assert batches[1].sparse_features["tags"].lengths().tolist() == [1, 3]


def test_dropping_instead_of_padding(tmp_path: Path) -> None:
    batches = list(_loader(tmp_path, 2, pad_eval=False))
    assert len(batches) == 2
    assert [g for b in batches for g in b.group_ids.tolist()] == [10, 20, 10, 30]


def _reference_pack(lengths: list[np.ndarray], values: list[np.ndarray], perm: np.ndarray, batch_size: int):
    """KJT layout by loops: per batch, per key, the ids of the batch's rows in order."""
    offsets = [np.concatenate([[0], np.cumsum(lf)]) for lf in lengths]
    out_lengths, out_values = [], []
    for start in range(0, len(perm), batch_size):
        rows = perm[start : start + batch_size]
        lens, vals = [], []
        for f in range(len(lengths)):
            for r in rows:
                lens.append(int(lengths[f][r]))
                vals.extend(values[f][offsets[f][r] : offsets[f][r + 1]].tolist())
        out_lengths.append(lens)
        out_values.append(vals)
    return out_lengths, out_values


@pytest.mark.parametrize("jagged", [False, True])
def test_pack_block_matches_reference(jagged: bool) -> None:
    rng = np.random.default_rng(0)
    n, b = 24, 4
    lengths = [np.ones(n, np.int32), rng.integers(0, 4, n).astype(np.int32) if jagged else np.ones(n, np.int32)]
    values = [rng.integers(0, 100, int(lf.sum())) for lf in lengths]
    cols = Columns(lengths, values, rng.normal(size=(n, 3)).astype(np.float32),
                   rng.integers(0, 2, (2, n)).astype(np.float32), rng.random((2, n)).astype(np.float32),
                   np.arange(n, dtype=np.int64))
    perm = rng.permutation(n)
    block = pack_block(cols, ["a", "b"], b, perm)
    ref_lengths, ref_values = _reference_pack(lengths, values, perm, b)
    assert block.num_batches == n // b
    for i in range(n // b):
        batch = block.batch(i)
        rows = perm[i * b : (i + 1) * b]
        assert batch.sparse_features.lengths().tolist() == ref_lengths[i]
        assert batch.sparse_features.values().tolist() == ref_values[i]
        assert batch.sparse_features.offsets().tolist() == np.concatenate([[0], np.cumsum(ref_lengths[i])]).tolist()
        assert batch.group_ids.tolist() == rows.tolist()
        assert torch.equal(batch.dense_features, torch.from_numpy(cols.dense[rows]))
        assert torch.equal(batch.labels, torch.from_numpy(cols.labels[:, rows]))
        assert torch.equal(batch.weights, torch.from_numpy(cols.weights[:, rows]))
        assert batch.sparse_features.length_per_key() == [b, int(lengths[1][rows].sum())]


def test_pad_columns() -> None:
    cols = Columns([np.array([2], np.int32)], [np.array([5, 6])], np.ones((1, 2), np.float32),
                   np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), np.array([9]))
    padded = pad_columns(cols, 3)
    assert padded.num_rows == 3
    assert padded.lengths[0].tolist() == [2, 0, 0] and padded.values[0].tolist() == [5, 6]
    assert padded.group_ids.tolist() == [9, -1, -1] and padded.weights.tolist() == [[1, 0, 0]]
    with pytest.raises(ValueError, match="whole number of batches"):
        pack_block(cols, ["a"], 2)
