"""A tiny CSV data set with a schema, and a tiny run trained on it, for the data fault-injection tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from smes_rec.train.app import TrainConfig
from tests.evaluation.helpers import tiny_config, train_in_process

_HEADER = "user_id,item_id,tab,x,click,like\n"


def write_log(path: Path, rows: int, seed: int, x_scale: float = 1.0, tabs: int = 6) -> Path:
    """A CSV log: 40 users, 300 items, a ``tab`` category, a number ``x`` and two labels that depend on them."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 40, rows)
    item = rng.integers(0, 300, rows)
    tab = rng.integers(0, tabs, rows)
    x = rng.normal(5.0, 2.0, rows) * x_scale
    click = (rng.random(rows) < 0.3 + 0.4 * (tab % 2)).astype(int)
    like = (rng.random(rows) < 0.2 + 0.05 * (x > 5)).astype(int)
    lines = [f"{u},{i},t{t},{v:.6g},{c},{lk}\n" for u, i, t, v, c, lk in zip(user, item, tab, x, click, like,
                                                                             strict=True)]
    path.write_text(_HEADER + "".join(lines))
    return path


def write_schema(path: Path, data_root: Path, files: Sequence[str], group: bool = True,
                 **sparse_overrides: dict) -> Path:
    """A schema for ``write_log`` files (names relative to ``data_root``); ``sparse_overrides[name]`` edits one
    sparse feature (a None value removes a key)."""
    sparse = {
        "user_id": {"name": "user_id", "column": "user_id", "num_embeddings": 64, "dim": 4},
        "item_id": {"name": "item_id", "column": "item_id", "num_embeddings": 512, "dim": 4},
        "tab": {"name": "tab", "column": "tab", "num_embeddings": 16, "dim": 4},
    }
    for name, edit in sparse_overrides.items():
        sparse[name] = {k: v for k, v in {**sparse[name], **edit}.items() if v is not None}
    schema = {
        "data_root": str(data_root),
        "files": list(files),
        "tasks": [{"name": "click", "column": "click", "positive": [1]},
                  {"name": "like", "column": "like", "positive": [1]}],
        "sparse": list(sparse.values()),
        "dense": [{"name": "x", "column": "x", "transform": "standardize"}],
    }
    if group:
        schema["group"] = "user_id"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return path


def train_tiny(out: Path, cache: Path, schema: Path, *overrides: str) -> TrainConfig:
    """Trains 4 steps of the tiny SMES model on ``schema``'s data (batch 64) and returns the config."""
    cfg = tiny_config(out, cache, f"data.schema={schema}", "data.batch_size=64", "data.block_rows=256",
                      "schedule.max_steps=4", "schedule.checkpoint_every=0", *overrides)
    train_in_process(cfg)
    return cfg
