"""A truncated or corrupt data file stops training, validate and convert with an error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.train import main as train_main
from tests.data.helpers import write_schema
from tests.data.test_prepare import prepare
from tests.data.test_truncated import corrupt_parquet, gzip_cut_at_line_boundary, gzip_cut_mid_member
from tests.evaluation.helpers import TINY, TINY_OVERRIDES


def _schema(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "schema.yaml"
    write_schema(path, {"files": [name], "group": "user",
                        "tasks": [{"name": "click", "column": "click", "positive": [1]}],
                        "sparse": [{"name": "user", "column": "user", "num_embeddings": 64, "dim": 4},
                                   {"name": "item", "column": "item", "num_embeddings": 64, "dim": 4}]})
    return path


@pytest.mark.parametrize("make", ["gzip_line_boundary", "gzip_mid_member", "corrupt_parquet"])
def test_a_damaged_file_is_an_error_naming_it(tmp_path: Path, make: str, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    name = "log.parquet" if make == "corrupt_parquet" else "log.csv.gz"
    path = tmp_path / name
    {"gzip_line_boundary": gzip_cut_at_line_boundary, "gzip_mid_member": gzip_cut_mid_member,
     "corrupt_parquet": corrupt_parquet}[make](path)
    schema = _schema(tmp_path, name)
    for command in (["validate", "--schema", str(schema)],
                    ["convert", "--schema", str(schema), "--out", str(tmp_path / "converted")]):
        assert prepare.main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: ") and "Traceback" not in err, err
    code = train_main(["--config", str(TINY), *[a for o in TINY_OVERRIDES for a in ("--set", o)],
                       "--set", f"data.schema={schema}", "--set", f"output_dir={tmp_path / 'run'}",
                       "--set", f"data.cache_dir={tmp_path / 'cache'}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and ("ends early" in err or "corrupt" in err), err
    # A cut gzip file is found while indexing, before any step; a corrupt Parquet row group when it is read.
    assert (tmp_path / "run" / "checkpoints").exists() == (make == "corrupt_parquet")
