"""Exact ids end to end: a vocabulary and identity ids fitted at training, stored, and reused by evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from apps.evaluate import main as evaluate_main
from smes_rec.data.fitted import load_fitted_transform
from smes_rec.train.checkpoint import CheckpointManager
from tests.faults.data_tiny import train_tiny, write_log, write_schema


def test_vocab_and_identity_ids_train_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_log(data / "a.csv", 1200, seed=0)
    schema = write_schema(tmp_path / "schema.yaml", data, ["a.csv"],
                          tab={"ids": "vocab", "num_embeddings": None},
                          user_id={"ids": "identity", "num_embeddings": 40})
    train_tiny(tmp_path / "run", tmp_path / "cache", schema)
    checkpoint = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    assert checkpoint is not None
    fitted = load_fitted_transform(checkpoint)
    assert fitted is not None and sorted(fitted.vocabularies["tab"]) == [f"t{i}" for i in range(6)]
    tables = {t[0]: t[1] for t in json.loads((checkpoint / "meta.json").read_text())["data_fingerprint"]["tables"]}
    assert tables == {"user_id": 40, "item_id": 512, "tab": 7}  # the vocabulary's 6 values + the OOV row

    # Other files with tab values never seen in training: the stored vocabulary maps them to the OOV id.
    other = tmp_path / "other"
    other.mkdir()
    write_log(other / "a.csv", 1200, seed=3, tabs=9)
    assert evaluate_main(["--checkpoint", str(checkpoint), "--split", "valid", "--out", str(tmp_path / "eval"),
                          "--set", f"data.data_root={other}", "--no-progress"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["tasks"]["click"]["num_examples"] > 0

    # An identity id outside [0, 40) is an error naming file, row and column.
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(data / "a.csv", bad / "a.csv")
    lines = (bad / "a.csv").read_text().splitlines()
    lines[5] = "40" + lines[5][lines[5].index(","):]
    (bad / "a.csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(checkpoint), "--split", "valid", "--out", str(tmp_path / "eval2"),
                          "--set", f"data.data_root={bad}", "--set", "data.split.fractions=[0.0, 1.0, 0.0]",
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"{bad / 'a.csv'}: row 5 (line 6), column 'user_id': id '40' is not an integer in [0, 40) (sparse "
            "feature 'user_id' has ids: identity)") in err
