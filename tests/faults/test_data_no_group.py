"""Data without a group column: training and evaluation report AUC, log loss and the rest; GAUC is n/a."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.evaluate import main as evaluate_main
from tests.faults.data_tiny import train_tiny, write_log, write_schema


def test_train_and_evaluate_without_a_group_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "a.csv", 1200, seed=0)
    schema = write_schema(tmp_path / "schema.yaml", tmp_path, ["a.csv"], group=False)
    train_tiny(tmp_path / "run", tmp_path / "cache", schema)
    printed = capsys.readouterr().out
    assert "n/a: GAUC is not available: the data has no group column" in printed
    final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())["valid"]
    for m in final.values():
        assert m["gauc"] is None and m["num_groups"] is None and 0 <= m["auc"] <= 1 and m["log_loss"] > 0

    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(tmp_path / "run"), "--split", "test", "--out", str(out),
                          "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| click | " in printed and "n/a" in printed and "no group column" in printed
    summary = json.loads((out / "metrics.json").read_text())
    for task in ("click", "like"):
        m = summary["tasks"][task]
        assert m["gauc"] is None and m["gauc_uniform"] is None and m["num_groups"] is None
        assert 0 <= m["auc"] <= 1 and m["log_loss"] > 0 and m["num_examples"] > 0
    assert summary["mean"]["gauc"] is None and summary["mean"]["auc"] is not None
    report = (out / "report.md").read_text()
    assert "**GAUC is not available**: the data has no group column" in report
