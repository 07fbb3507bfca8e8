"""Schema loading: strictness, validation, table sharing, path resolution and the shipped schema files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from smes_rec.data.config import DataConfig, SplitConfig
from smes_rec.data.schema import DatasetSchema, SparseFeature, TableSpec, Task, load_schema
from smes_rec.data.synthetic import synthetic_schema
from smes_rec.utils.config import ConfigError, from_mapping
from tests.data.helpers import REPO_ROOT, write_schema

CONFIGS = REPO_ROOT / "configs" / "data"

BASE = {
    "files": ["data.csv"],
    "group": "user",
    "tasks": [{"name": "click", "column": "click", "positive": [1]}],
    "sparse": [{"name": "item", "column": "item", "num_embeddings": 100, "dim": 8}],
    "dense": [{"name": "price", "column": "price", "transform": "log1p", "fill": 0}],
}


def _with(**changes) -> dict:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in BASE.items()}
    out.update(changes)
    return out


def test_minimal_schema_loads_with_defaults(tmp_path: Path) -> None:
    schema = write_schema(tmp_path / "s.yaml", BASE)
    assert schema.task_names == ("click",)
    assert schema.sparse_feature_names == ("item",)
    assert schema.dense_feature_names == ("price",)
    assert schema.num_dense == 1 and schema.num_tasks == 1
    assert schema.tasks[0].positive == (1.0,) and schema.tasks[0].weight == 1.0
    assert schema.header is True and schema.format is None and schema.strip is False
    assert schema.data_root == str(tmp_path.resolve())  # relative paths resolve against the schema's folder


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (_with(colour="red"), "unknown key(s) ['colour']"),
        (_with(sparse=[{"name": "item", "column": "item", "num_embeddings": 100, "dim": 8, "size": 3}]),
         "unknown key(s) ['sparse[0].size']"),
        (_with(sparse=[{"name": "item", "column": "item", "num_embeddings": 100, "dim": "8"}]),
         "sparse[0].dim: expected an integer, got '8'"),
        (_with(header="yes"), "header: expected true/false"),
        (_with(format="xlsx"), "format: 'xlsx' is not one of"),
        (_with(dense=[{"name": "price", "column": "price", "transform": "sqrt"}]), "dense[0].transform: 'sqrt'"),
        ({k: v for k, v in BASE.items() if k != "tasks"}, "tasks: required key is missing"),
        (_with(sparse=[{"name": "item", "column": "item", "num_embeddings": -5, "dim": 8}]),
         "sparse[0]: num_embeddings must be a positive integer, got -5"),
        (_with(sparse=[{"name": "item", "column": "item", "num_embeddings": 10, "dim": 0}]),
         "sparse[0]: dim must be a positive integer"),
        (_with(sparse=[{"name": "item", "column": "item", "dim": 8}]), "sparse[0]: num_embeddings is required"),
        (_with(sparse=[{"name": "p", "column": "price", "dim": 8, "boundaries": [3, 1]}]),
         "sparse[0]: boundaries must be finite and strictly increasing"),
        (_with(sparse=[{"name": "p", "column": "price", "dim": 8, "boundaries": [1, 3], "num_embeddings": 9}]),
         "num_embeddings must be len(boundaries) + 1 = 3"),
        (_with(sparse=[{"name": "item.id", "column": "item", "num_embeddings": 10, "dim": 8}]), "'item.id' must match"),
        (_with(tasks=[{"name": "click", "column": "click"}]), "tasks[0]: exactly one of `positive` and `threshold`"),
        (_with(tasks=[{"name": "click", "column": "click", "positive": [1], "threshold": 0.5}]), "exactly one of"),
        (_with(tasks=[{"name": "click", "column": "click", "threshold": 0.5, "negative": [0]}]),
         "`negative` is only used with `positive`"),
        (_with(dense=[{"name": "price", "column": "price", "fill": ".nan"}]), "dense[0].fill: expected a number"),
        (_with(dense=[{"name": "item", "column": "price"}]), "dense[0]: name 'item' is already used by sparse[0]"),
        (_with(header=False), "header: false needs `columns`"),
        (_with(columns=["a", "b"]), "`columns` names the columns of header-less files"),
        (_with(delimiter=";;"), "delimiter must be one character"),
        (_with(joins=[{"path": "u.csv", "on": "user"}]), "unknown key(s) ['joins[0].on']"),
    ],
)
def test_bad_schemas_name_file_and_key(tmp_path: Path, mapping: dict, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    with pytest.raises(ConfigError) as e:
        write_schema(path, mapping)
    assert expected in str(e.value)
    assert str(path) in str(e.value)


def test_standardize_stats_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mean and std must be given together"):
        write_schema(tmp_path / "s.yaml", _with(dense=[{"name": "p", "column": "p", "transform": "standardize",
                                                         "mean": 1.0}]))
    with pytest.raises(ConfigError, match="only used with transform: standardize"):
        write_schema(tmp_path / "s.yaml", _with(dense=[{"name": "p", "column": "p", "mean": 1.0, "std": 2.0}]))


def test_shared_tables_and_table_specs(tmp_path: Path) -> None:
    schema = write_schema(tmp_path / "s.yaml", _with(sparse=[
        {"name": "item", "column": "item", "num_embeddings": 100, "dim": 8, "table": "items"},
        {"name": "tab", "column": "tab", "num_embeddings": 10, "dim": 4},
        {"name": "last_item", "column": "last_item", "num_embeddings": 100, "dim": 8, "table": "items",
         "separator": "|"},
        {"name": "price_bucket", "column": "price", "dim": 4, "boundaries": [1, 10, 100]},
    ]))
    assert schema.tables() == (
        TableSpec("items", 100, 8, ("item", "last_item")),
        TableSpec("tab", 10, 4, ("tab",)),
        TableSpec("price_bucket", 4, 4, ("price_bucket",)),
    )
    with pytest.raises(ConfigError, match=r"sparse\[1\] \(b\) shares table 't' with sparse\[0\] \(a\)"):
        write_schema(tmp_path / "s.yaml", _with(sparse=[
            {"name": "a", "column": "a", "num_embeddings": 100, "dim": 8, "table": "t"},
            {"name": "b", "column": "b", "num_embeddings": 50, "dim": 8, "table": "t"},
        ]))


def test_data_root_resolution(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    schema = write_schema(tmp_path / "schemas" / "s.yaml", _with(data_root="../data"))
    assert schema.data_root == str((tmp_path / "data").resolve())
    assert schema.resolve("x/y.csv") == tmp_path.resolve() / "data" / "x" / "y.csv"
    assert schema.resolve("/abs/z.csv") == Path("/abs/z.csv")
    overridden = load_schema(tmp_path / "schemas" / "s.yaml", data_root=tmp_path / "elsewhere")
    assert overridden.data_root == str((tmp_path / "elsewhere").resolve())


def test_direct_construction_validates() -> None:
    with pytest.raises(ValueError, match="num_embeddings must be a positive integer"):
        SparseFeature("a", "a", dim=4, num_embeddings=0)
    with pytest.raises(ValueError, match="at least one task"):
        DatasetSchema(tasks=())
    assert SparseFeature("b", "x", dim=4, boundaries=(0.0, 1.0)).num_embeddings == 3
    assert Task("t", "c", threshold=0.5).positive is None


def test_shipped_synthetic_schema_matches_the_generator() -> None:
    shipped = load_schema(CONFIGS / "synthetic.yaml")
    assert dataclasses.replace(shipped, data_root=None) == synthetic_schema()
    assert len(shipped.sparse) >= 20 and shipped.num_dense >= 8 and shipped.num_tasks == 8
    assert any(f.separator for f in shipped.sparse) and any(f.boundaries for f in shipped.sparse)


def test_shipped_kuairand_schemas_load() -> None:
    official = load_schema(CONFIGS / "kuairand.yaml")
    assert official.task_names == ("is_click", "long_view", "is_like", "is_follow", "is_comment", "is_forward",
                                   "is_hate", "is_profile_enter")
    assert official.group == "user_id" and official.joins[0].key == "user_id"
    subset = load_schema(CONFIGS / "kuairand_subset.yaml")
    assert subset.task_names == ("is_click", "long_view", "is_profile_enter", "is_comment", "is_forward",
                                 "is_follow", "like")
    assert subset.tasks[-1].column == "label"
    # ../../../shared/data from configs/data is ../shared/data from the repository root.
    assert Path(subset.data_root) == (REPO_ROOT.parent / "shared" / "data").resolve()


def test_data_config_is_strict_and_validated() -> None:
    cfg = from_mapping(DataConfig, {"batch_size": 256, "split": {"by": "time", "valid_start": 20220418}})
    assert cfg.split.valid_start == 20220418.0 and cfg.schema == "synthetic"
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(DataConfig, {"batchsize": 256})
    with pytest.raises(ConfigError, match="fractions must be non-negative and sum to 1"):
        from_mapping(DataConfig, {"split": {"fractions": [0.5, 0.2, 0.2]}})
    with pytest.raises(ConfigError, match="a time split needs valid_start"):
        from_mapping(DataConfig, {"split": {"by": "time"}})
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        from_mapping(DataConfig, {"batch_size": 0})
    with pytest.raises(ValueError, match="test_start"):
        SplitConfig(by="time", valid_start=5, test_start=4)
