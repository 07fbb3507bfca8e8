"""Small random models and batches for training tests."""

from __future__ import annotations

import itertools

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from smes_rec.data.batch import Batch
from smes_rec.models.factory import ModelConfig, build_ranker
from smes_rec.models.sparse import TableSpec
from smes_rec.train.wrapper import TrainWrapper

# Dims are multiples of 4 so column-wise sharding can split them.
TABLES = [TableSpec("t_user", 64, 8, ("user",)), TableSpec("t_item", 40, 8, ("item", "item_history"))]
FEATURES = ["user", "item", "item_history"]
NUM_DENSE, NUM_TASKS = 3, 2
MODEL = ModelConfig(arch="smes", num_experts=6, k_shared=1, k_adaptive=1, bottom_layers=(16,), expert_layers=(8,),
                    tower_layers=(4,), aux_loss_weight=0.05)


def make_wrapper(embedding_device: str = "meta", cfg: ModelConfig = MODEL, seed: int = 0) -> TrainWrapper:
    torch.manual_seed(seed)
    ranker = build_ranker(cfg, TABLES, FEATURES, NUM_DENSE, NUM_TASKS, embedding_device)
    return TrainWrapper(ranker, [1.0] * NUM_TASKS, cfg.aux_loss_weight)


def make_rows(n: int, seed: int) -> dict:
    """Random instances: dense features, variable-length ids per feature (some empty), labels, groups."""
    g = torch.Generator().manual_seed(seed)
    rows = {"dense": torch.randn(n, NUM_DENSE, generator=g), "ids": {}}
    for table in TABLES:
        for feature in table.feature_names:
            lengths = torch.randint(0, 4 if feature == "item_history" else 2, (n,), generator=g)
            if feature != "item_history":
                lengths = torch.ones(n, dtype=torch.int64)
            values = torch.randint(0, table.num_embeddings, (int(lengths.sum()),), generator=g)
            rows["ids"][feature] = list(torch.split(values, lengths.tolist()))
    rows["labels"] = (torch.rand(NUM_TASKS, n, generator=g) < 0.4).float()
    rows["groups"] = torch.randint(0, 5, (n,), generator=g)
    return rows


def to_batch(rows: dict, start: int, end: int) -> Batch:
    lengths, values = [], []
    for feature in FEATURES:
        pieces = rows["ids"][feature][start:end]
        lengths.append(torch.tensor([len(p) for p in pieces], dtype=torch.int32))
        values.extend(pieces)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=FEATURES, values=torch.cat(values).long(), lengths=torch.cat(lengths)
    )
    labels = rows["labels"][:, start:end]
    return Batch(rows["dense"][start:end], kjt, labels, torch.ones_like(labels), rows["groups"][start:end])


class InMemorySource:
    """A DataSource over random rows: each epoch a seeded permutation, rank r reading its own contiguous shard."""

    task_names = tuple(f"task{t}" for t in range(NUM_TASKS))
    feature_names = tuple(FEATURES)
    tables = tuple(TABLES)
    num_dense = NUM_DENSE
    has_groups = True

    def __init__(self, rank: int, world_size: int, rows_per_rank: int, batch_size: int, seed: int = 0,
                 nan_from_batch: int | None = None, short_by: int = 0):
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.nan_from_batch = nan_from_batch  # poison dense features from this training batch on (divergence)
        self.short_by = short_by  # this rank has (and announces) this many batches fewer per split and epoch
        self.rows_per_rank = rows_per_rank
        self.splits = {"train": make_rows(rows_per_rank * world_size, seed), "valid": make_rows(128, 99)}

    def num_batches(self, split: str) -> int:
        return self.splits[split]["dense"].size(0) // self.world_size // self.batch_size - self.short_by

    def batches(self, split: str, epoch: int, skip: int):
        return itertools.islice(self._batches(split, epoch, skip), max(0, self.num_batches(split) - skip))

    def _batches(self, split: str, epoch: int, skip: int):
        rows = self.splits[split]
        n = rows["dense"].size(0) // self.world_size
        order = torch.randperm(n * self.world_size, generator=torch.Generator().manual_seed(epoch))
        if split != "train":
            order = torch.arange(n * self.world_size)
        mine = order[self.rank * n : (self.rank + 1) * n]
        shuffled = {
            "dense": rows["dense"][mine],
            "ids": {f: [rows["ids"][f][i] for i in mine.tolist()] for f in FEATURES},
            "labels": rows["labels"][:, mine],
            "groups": rows["groups"][mine],
        }
        for start in range(skip * self.batch_size, n - self.batch_size + 1, self.batch_size):
            batch = to_batch(shuffled, start, start + self.batch_size)
            if split == "train" and self.nan_from_batch is not None and start // self.batch_size >= self.nan_from_batch:
                batch.dense_features[0, 0] = float("nan")
            yield batch
