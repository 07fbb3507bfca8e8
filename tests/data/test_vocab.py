"""Exact ids: fitted vocabularies (``ids: vocab``) and small integer ids used as they are (``ids: identity``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from smes_rec.data.config import DataConfig, SplitConfig
from smes_rec.data.loader import build_dataloader
from smes_rec.data.schema import DataError, DatasetSchema, SparseFeature, Task
from smes_rec.data.source import DataSource
from smes_rec.data.vocab import OOV_ID, VocabCounter, Vocabulary
from smes_rec.utils.config import ConfigError
from tests.data.helpers import write_schema


def _reference_vocab(chunks: list[list[int | str | None]], min_count: int, max_size: int | None) -> tuple:
    """The documented order, written out: count desc, then integers (ascending) before text (code points)."""
    counts: Counter = Counter(v for chunk in chunks for v in chunk if v is not None)
    keep = [v for v, c in counts.items() if c >= min_count]
    keep.sort(key=lambda v: (-counts[v], isinstance(v, str), v if isinstance(v, int) else 0,
                             v if isinstance(v, str) else ""))
    return tuple(keep[:max_size])


@pytest.mark.parametrize("seed", range(5))
def test_vocabulary_matches_a_reference_on_random_chunks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool: list[int | str | None] = [*range(-3, 9), "a", "b", "ab", "é", "Z", None]
    chunks = [[pool[i] for i in rng.integers(0, len(pool), rng.integers(0, 40))] for _ in range(4)]
    counter = VocabCounter()
    for chunk in chunks:
        # Integers arrive as text ("007" style), ints, or integral floats: one canonical value each.
        form = rng.integers(0, 3)
        if form == 0:
            cells = pa.array([None if v is None else (f"00{v}" if isinstance(v, int) and v >= 0 else str(v))
                              for v in chunk], pa.string())
        elif form == 1 and all(not isinstance(v, str) for v in chunk):
            cells = pa.array(chunk, pa.int64())
        else:
            cells = pa.array([None if v is None else str(v) for v in chunk], pa.string()).dictionary_encode()
        counter.add(cells)
    for min_count, max_size in ((1, None), (2, None), (1, 3), (3, 2)):
        got = counter.vocabulary(min_count, max_size)
        assert got == _reference_vocab(chunks, min_count, max_size), (min_count, max_size)
    vocab = counter.vocabulary()
    lookup = Vocabulary(vocab)
    assert lookup.size == len(vocab) + 1
    queries = [*pool, "zz", 99, "-3", " 5 "]
    ids, ok = lookup.lookup(pa.array([None if q is None else str(q) for q in queries], pa.string()))
    for q, i, valid in zip(queries, ids.tolist(), ok.tolist(), strict=True):
        if q is None:
            assert not valid
            continue
        canon = int(str(q).strip()) if str(q).strip().lstrip("-").isdigit() else q
        assert valid and i == (vocab.index(canon) + 1 if canon in vocab else OOV_ID), q


def test_text_matches_exactly_and_floats_by_their_shortest_text() -> None:
    lookup = Vocabulary([5, "1.5", "abc"])
    ids, ok = lookup.lookup(pa.array([5.0, 1.5, 2.5, float("nan")]))
    assert ids[ok].tolist() == [1, 2, OOV_ID] and ok.tolist() == [True, True, True, False]
    ids, _ = lookup.lookup(pa.array(["abc", "abd", "ABC", "5", "5.0"]))
    assert ids.tolist() == [3, OOV_ID, OOV_ID, 1, 1]


CSV = """user,tab,hour,tags,click
1,news,3,a|b,1
2,news,5,b,0
3,sport,23,,1
1,music,0,a|a|c,0
2,news,7,b|d,1
3,sport,3,c,0
"""


def _schema(tmp_path: Path, **edits: dict) -> Path:
    sparse = {
        "tab": {"name": "tab", "column": "tab", "dim": 4, "ids": "vocab"},
        "hour": {"name": "hour", "column": "hour", "dim": 4, "ids": "identity", "num_embeddings": 24},
        "tags": {"name": "tags", "column": "tags", "dim": 4, "ids": "vocab", "separator": "|", "table": "tags"},
        "tab2": {"name": "tab2", "column": "tab", "dim": 4, "ids": "vocab", "table": "tags"},
    }
    for name, edit in edits.items():
        sparse[name] = {k: v for k, v in {**sparse[name], **edit}.items() if v is not None}
    (tmp_path / "rows.csv").write_text(CSV)
    mapping = {"files": ["rows.csv"], "group": "user", "tasks": [{"name": "click", "column": "click",
                                                                   "positive": [1]}],
               "sparse": list(sparse.values())}
    write_schema(tmp_path / "schema.yaml", mapping)
    return tmp_path / "schema.yaml"


def _cfg(schema: Path, tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(schema=str(schema), batch_size=6, num_workers=0, shuffle=False,
                      cache_dir=str(tmp_path / "cache"), split=SplitConfig(fractions=(1.0, 0.0, 0.0)), **kw)


def test_vocab_and_identity_ids_through_the_pipeline(tmp_path: Path) -> None:
    cfg = _cfg(_schema(tmp_path), tmp_path)
    source = DataSource.open(cfg)
    fitted = source.fitted_transform()
    # One vocabulary per table: "tags" is fitted over the tags column and the tab column together (a, b and news
    # are seen 3 times each: text order breaks the tie).
    assert fitted.vocabularies == {"tab": ("news", "sport", "music"),
                                   "tags": ("a", "b", "news", "c", "sport", "d", "music")}
    tables = {t.name: t.num_embeddings for t in source.schema.tables(fitted.vocab_sizes())}
    assert tables == {"tab": 4, "hour": 24, "tags": 8}
    (batch,) = list(build_dataloader(cfg, "all", source=source))
    kjt = batch.sparse_features.to_dict()
    assert kjt["tab"].values().tolist() == [1, 1, 2, 3, 1, 2]
    assert kjt["hour"].values().tolist() == [3, 5, 23, 0, 7, 3]
    assert kjt["tags"].lengths().tolist() == [2, 1, 0, 3, 2, 1]
    assert kjt["tags"].values().tolist() == [1, 2, 2, 1, 1, 4, 2, 6, 4]
    assert kjt["tab2"].values().tolist() == [3, 3, 5, 7, 3, 5]


def test_unseen_values_get_the_oov_id_with_the_stored_vocabulary(tmp_path: Path) -> None:
    cfg = _cfg(_schema(tmp_path), tmp_path)
    fitted = DataSource.open(cfg).fitted_transform()
    other = tmp_path / "other"
    other.mkdir()
    (other / "rows.csv").write_text("user,tab,hour,tags,click\n4,games,1,zz|a,1\n5,sport,2,,0\n")
    scoring = DataSource.open(_cfg(_schema(tmp_path), tmp_path, data_root=str(other)), fitted)
    assert scoring.fitted_transform() is fitted  # nothing refitted on the scored files
    (batch,) = list(build_dataloader(_cfg(_schema(tmp_path), tmp_path, data_root=str(other)),
                                     "all", source=scoring))
    kjt = batch.sparse_features.to_dict()
    assert kjt["tab"].values().tolist() == [OOV_ID, 2]
    assert kjt["tags"].values().tolist() == [OOV_ID, 1]


def test_min_count_and_max_size(tmp_path: Path) -> None:
    cfg = _cfg(_schema(tmp_path, tab={"min_count": 2}, tags={"max_size": 2}, tab2={"max_size": 2}), tmp_path)
    fitted = DataSource.open(cfg).fitted_transform()
    assert fitted.vocabularies == {"tab": ("news", "sport"), "tags": ("a", "b")}
    (batch,) = list(build_dataloader(cfg, "all"))
    assert batch.sparse_features["tab"].values().tolist() == [1, 1, 2, OOV_ID, 1, 2]


def test_identity_out_of_range_names_file_row_and_column(tmp_path: Path) -> None:
    schema = _schema(tmp_path, hour={"num_embeddings": 20})
    with pytest.raises(DataError, match=r"rows.csv: row 3 \(line 4\), column 'hour': id '23' is not an integer in "
                                        r"\[0, 20\) \(sparse feature 'hour' has ids: identity\)"):
        list(build_dataloader(_cfg(schema, tmp_path), "all"))
    multi = _schema(tmp_path, hour={"column": "tags", "separator": "|", "num_embeddings": 24})
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'tags': id 'a' is not an integer"):
        list(build_dataloader(_cfg(multi, tmp_path), "all"))


@pytest.mark.parametrize(("feature", "message"), [
    ({"ids": "vocab", "num_embeddings": 10}, "remove num_embeddings"),
    ({"ids": "hash", "num_embeddings": 10, "min_count": 2}, "only used with ids: vocab"),
    ({"ids": "vocab", "min_count": 0}, "min_count must be >= 1"),
    ({"ids": "identity"}, "num_embeddings is required"),
    ({"ids": "vocab", "boundaries": [1.0, 2.0]}, "`ids` must stay hash"),
    ({"ids": "exact", "num_embeddings": 10}, "ids"),
])
def test_schema_refuses_inconsistent_id_options(tmp_path: Path, feature: dict, message: str) -> None:
    path = tmp_path / "s.yaml"
    mapping = {"tasks": [{"name": "c", "column": "c", "positive": [1]}],
               "sparse": [{"name": "f", "column": "f", "dim": 4, **feature}]}
    with pytest.raises(ConfigError, match=message):
        write_schema(path, mapping)


def test_tables_need_the_fitted_vocabulary_sizes() -> None:
    schema = DatasetSchema(tasks=(Task("c", "c", positive=(1.0,)),),
                           sparse=(SparseFeature("f", "f", dim=4, ids="vocab"),
                                   SparseFeature("g", "g", dim=4, num_embeddings=7, ids="identity")))
    with pytest.raises(ValueError, match="table 'f' uses ids: vocab"):
        schema.tables()
    assert [t.num_embeddings for t in schema.tables({"f": 12})] == [12, 7]
