"""The batch loader: rank sharding, determinism, resuming, statistics and TorchRec compatibility."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

from smes_rec.data.config import DataConfig, SplitConfig
from smes_rec.data.loader import build_dataloader, plan_epoch
from smes_rec.data.schema import DatasetSchema, Task
from smes_rec.data.source import DataSource
from smes_rec.data.synthetic import synthetic_schema
from tests.data.helpers import SMALL_SYNTHETIC


def _source(directory: Path, cache: Path, split: SplitConfig | None = None) -> DataSource:
    """The synthetic data with the row number (``time_ms`` is unique per row) as the group id, to track rows."""
    schema = dataclasses.replace(synthetic_schema(SMALL_SYNTHETIC), group="time_ms", data_root=str(directory))
    return DataSource.from_schema(schema, split=split, cache_dir=cache)


def _cfg(**kw) -> DataConfig:
    return DataConfig(**{"batch_size": 512, "num_workers": 0, "block_rows": 2048, **kw})


def _rows(loader) -> list[int]:
    return [r for b in loader for r in b.group_ids.tolist()]


def test_ranks_partition_the_rows(synthetic_dir: Path, tmp_path: Path) -> None:
    source = _source(synthetic_dir, tmp_path)
    all_times = set(pq.read_table(synthetic_dir / "log", columns=["time_ms"]).column(0).to_pylist())
    # Evaluation splits: every row exactly once over the ranks, padding (-1) to equal batch counts.
    for world in (2, 3):
        loaders = [build_dataloader(_cfg(), "all", r, world, source=source) for r in range(world)]
        assert len({len(loader) for loader in loaders}) == 1
        seen = [r for loader in loaders for r in _rows(loader) if r != -1]
        assert len(seen) == len(set(seen)) == 60_000 and set(seen) == all_times
    # Train: shuffled, disjoint, whole batches, the same count on both ranks.
    train = [build_dataloader(_cfg(), "train", r, 2, source=source) for r in range(2)]
    rows = [_rows(loader) for loader in train]
    assert len(rows[0]) == len(rows[1]) == len(train[0]) * 512
    assert not set(rows[0]) & set(rows[1])
    total = int(source.split_counts("train").sum())
    assert 0 <= total - 2 * len(rows[0]) < 2 * 512 + 2
    assert rows[0] != sorted(rows[0])


def test_order_is_deterministic_per_seed_and_epoch(synthetic_dir: Path, tmp_path: Path) -> None:
    source = _source(synthetic_dir, tmp_path)
    a = _rows(build_dataloader(_cfg(seed=1), "train", source=source))
    b = _rows(build_dataloader(_cfg(seed=1), "train", source=source))
    c = _rows(build_dataloader(_cfg(seed=2), "train", source=source))
    d = _rows(build_dataloader(_cfg(seed=1), "train", epoch=1, source=source))
    assert a == b
    assert a != c and a != d
    assert sorted(a) != sorted(d) or a != d  # another epoch: another order (and, maybe, other dropped rows)
    valid = build_dataloader(_cfg(), "valid", source=source)
    assert _rows(valid) == _rows(valid)  # never shuffled
    assert [r for r in _rows(valid) if r >= 0] == sorted(r for r in _rows(valid) if r >= 0)


@pytest.mark.dist
def test_worker_count_does_not_change_the_batches(synthetic_dir: Path, tmp_path: Path) -> None:
    source = _source(synthetic_dir, tmp_path)
    source.fitted_transform()
    inline = list(build_dataloader(_cfg(), "train", source=source))
    workers = list(build_dataloader(_cfg(num_workers=2), "train", source=source))
    assert len(inline) == len(workers)
    for x, y in zip(inline, workers, strict=True):
        assert torch.equal(x.group_ids, y.group_ids)
        assert torch.equal(x.sparse_features.values(), y.sparse_features.values())
        assert torch.equal(x.sparse_features.offsets(), y.sparse_features.offsets())
        assert torch.equal(x.dense_features, y.dense_features)
        assert torch.equal(x.labels, y.labels)


def test_workers_start_in_the_thread_that_calls_iter(synthetic_dir: Path, tmp_path: Path) -> None:
    """``iter(loader)`` forks the workers itself, so a consumer on another thread (the eval pipeline's) never forks."""
    source = _source(synthetic_dir, tmp_path)
    source.fitted_transform()
    loader = build_dataloader(_cfg(num_workers=2), "train", source=source)
    before = {p.pid for p in mp.active_children()}
    batches = iter(loader)
    started = {p.pid for p in mp.active_children()} - before
    assert len(started) == 2
    consumed = []
    thread = threading.Thread(target=lambda: consumed.extend(b.group_ids for b in batches))
    thread.start()
    thread.join()
    assert {p.pid for p in mp.active_children()} - before <= started  # nothing forked from the consumer thread
    assert torch.equal(torch.cat(consumed), torch.cat([b.group_ids for b in build_dataloader(_cfg(), "train",
                                                                                             source=source)]))


def test_resume_continues_where_it_stopped(synthetic_dir: Path, tmp_path: Path) -> None:
    source = _source(synthetic_dir, tmp_path)
    full = [b.group_ids for b in build_dataloader(_cfg(seed=4), "train", source=source)]
    # Skip cheaply by position.
    tail = [b.group_ids for b in build_dataloader(_cfg(seed=4), "train", start_batch=7, source=source)]
    assert len(tail) == len(full) - 7 and all(torch.equal(x, y) for x, y in zip(tail, full[7:], strict=True))
    # Stop mid-epoch, save the state, restore it in a new loader.
    loader = build_dataloader(_cfg(seed=4), "train", source=source)
    for i, _ in enumerate(loader):
        if i == 10:
            break
    state = loader.state_dict()
    assert state == {"epoch": 0, "batch": 11}
    resumed = build_dataloader(_cfg(seed=4), "train", source=source)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    rest = [b.group_ids for b in resumed]
    assert all(torch.equal(x, y) for x, y in zip(rest, full[11:], strict=True)) and len(rest) == len(full) - 11
    # A finished epoch moves on to the next one, which is shuffled differently.
    assert resumed.state_dict() == {"epoch": 1, "batch": 0}
    next_epoch = [b.group_ids for b in resumed]
    assert not torch.equal(next_epoch[0], full[0])
    # Stopping right after the last batch also ends the epoch.
    last = build_dataloader(_cfg(seed=4), "train", start_batch=len(full) - 1, source=source)
    for batch in last:
        assert torch.equal(batch.group_ids, full[-1])
        break
    assert last.state_dict() == {"epoch": 1, "batch": 0}
    with pytest.raises(ValueError, match="outside the epoch"):
        build_dataloader(_cfg(), "train", start_batch=10_000, source=source)


def test_dense_statistics_come_from_the_train_split_and_are_cached(synthetic_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(synthetic_dir, tmp_path)
    stats = source.fitted_transform().dense
    assert set(stats) == {"register_days", "server_width", "server_height", "hour"}
    # The reference: the train rows' raw values with numpy.
    hours = []
    for u in range(len(source.units)):
        table, _ = source.read(u, "train")
        hours.append(table.column("hourmin").to_numpy())
    hours = np.concatenate(hours).astype(np.float64)
    assert len(hours) == int(source.split_counts("train").sum())
    assert stats["hour"][0] == pytest.approx(hours.mean(), rel=1e-9)
    assert stats["hour"][1] == pytest.approx(hours.std(), rel=1e-9)
    assert len(list((tmp_path / "stats").glob("*.json"))) == 1
    # Another process (here: a new source) reads the cached numbers instead of recomputing them.
    monkeypatch.setattr(DataSource, "fit_transform", lambda *a, **k: pytest.fail("recomputed"))
    assert _source(synthetic_dir, tmp_path).fitted_transform().dense == stats
    # Standardised training features have mean ~0 and std ~1.
    batches = list(build_dataloader(_cfg(), "train", source=source))
    dense = torch.cat([b.dense_features for b in batches])
    col = source.schema.dense_feature_names.index("hour")
    assert abs(float(dense[:, col].mean())) < 0.05 and abs(float(dense[:, col].std()) - 1) < 0.05


def test_batches_feed_an_embedding_bag_collection(synthetic_dir: Path, tmp_path: Path) -> None:
    source = _source(synthetic_dir, tmp_path)
    schema = source.schema
    ebc = EmbeddingBagCollection(tables=[
        EmbeddingBagConfig(name=t.name, embedding_dim=t.dim, num_embeddings=t.num_embeddings,
                           feature_names=list(t.feature_names))
        for t in schema.tables()
    ])
    batch = next(iter(build_dataloader(_cfg(batch_size=64), "train", source=source)))
    assert batch.dense_features.shape == (64, schema.num_dense)
    assert batch.labels.shape == batch.weights.shape == (schema.num_tasks, 64)
    pooled = ebc(batch.sparse_features).to_dict()
    assert set(pooled) == set(schema.sparse_feature_names)
    for t in schema.tables():
        for name in t.feature_names:
            assert pooled[name].shape == (64, t.dim)
    kjt = batch.sparse_features
    for f in schema.sparse:
        ids = kjt[f.name].values()
        assert ids.numel() > 0 and int(ids.min()) >= 0 and int(ids.max()) < f.num_embeddings


def test_too_small_train_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("y\n1\n0\n1\n")
    schema = DatasetSchema(tasks=(Task("y", "y", positive=(1.0,)),), files=("d.csv",), data_root=str(tmp_path))
    source = DataSource.from_schema(schema, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="too few for 2 rank"):
        build_dataloader(_cfg(batch_size=2), "train", 0, 2, source=source)


def test_plan_cuts_blocks_of_whole_batches() -> None:
    counts = np.array([5, 0, 7, 3, 9])
    plan = plan_epoch(counts, 4, 0, 1, shuffle=False, seed=0, epoch=0, block_rows=8, drop_last=True)
    assert plan.num_batches == 6 and plan.num_rows == 24 and plan.batches_per_block == 2
    assert [b.num_batches for b in plan.blocks] == [2, 2, 2]
    # Units 0, 2, 3, 4 hold rows [0, 5), [5, 12), [12, 15), [15, 24) of the epoch; blocks hold 8 rows each.
    pieces = [[(p.unit, p.start, p.stop) for p in b.pieces] for b in plan.blocks]
    assert pieces == [[(0, 0, 5), (2, 0, 3)], [(2, 3, 7), (3, 0, 3), (4, 0, 1)], [(4, 1, 9)]]
    assert all(b.shuffle_seed is None for b in plan.blocks)
    shuffled = plan_epoch(counts, 4, 0, 1, shuffle=True, seed=0, epoch=0, block_rows=8, drop_last=True)
    covered = sorted((p.unit, r) for b in shuffled.blocks for p in b.pieces for r in range(p.start, p.stop))
    assert len(covered) == len(set(covered)) == 24 and len({b.shuffle_seed for b in shuffled.blocks}) == 3
    padded = plan_epoch(counts, 4, 1, 2, shuffle=False, seed=0, epoch=0, block_rows=8, drop_last=False)
    assert padded.num_batches == 3 and padded.num_rows == 12  # ceil(24 / 2) rows of rank 1, in 3 batches


def _rank_main(directory: str, cache: str, rank: int, out: str) -> None:
    torch.set_num_threads(1)
    source = _source(Path(directory), Path(cache))
    loader = build_dataloader(_cfg(num_workers=1), "all", rank, 2, source=source)
    Path(out).write_text(json.dumps({"batches": len(loader), "rows": _rows(loader)}))


@pytest.mark.dist
def test_two_processes_see_every_row_once(synthetic_dir: Path, tmp_path: Path) -> None:
    _source(synthetic_dir, tmp_path).fitted_transform()  # computed once; the ranks read the cache
    ctx = mp.get_context("fork")  # each rank still opens its own DataSource; fork only skips re-importing torch
    procs = [ctx.Process(target=_rank_main, args=(str(synthetic_dir), str(tmp_path), r, str(tmp_path / f"{r}.json")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert results[0]["batches"] == results[1]["batches"]
    seen = [r for res in results for r in res["rows"] if r != -1]
    assert len(seen) == len(set(seen)) == 60_000
