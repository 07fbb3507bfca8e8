"""apps/compare.py: tables, deltas against a chosen baseline, the chart, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from apps.compare import main as compare_main
from smes_rec.evaluation.compare import compare_runs, load_run
from smes_rec.evaluation.report import build_summary, write_metrics_json
from smes_rec.evaluation.telemetry import ActivationBound, RoutingAccumulator
from smes_rec.metrics import TaskMetrics

TASKS = ("click", "like")


def _write_eval(folder: Path, arch: str, gauc: dict[str, float], auc: dict[str, float]) -> Path:
    """A metrics.json as apps/evaluate.py writes it, with the given GAUC and AUC per task."""
    metrics = {
        task: TaskMetrics(auc=auc[task], gauc=g, gauc_uniform=g, num_groups=10, log_loss=0.5, ne=0.9,
                          calibration=1.0, positive_rate=0.3, num_examples=100)
        for task, g in gauc.items()
    }
    routing = RoutingAccumulator(len(gauc), 4)
    routing.update(torch.tensor([[[0, 1]] * len(gauc)] * 3), torch.ones(3, dtype=torch.bool))
    run = {"checkpoint": "x", "step": 1, "arch": arch, "split": "test", "world_size_trained": 1,
           "world_size_evaluated": 1, "mode": "unsharded", "max_batches": None, "num_batches": 1, "seconds": 0.1}
    summary = build_summary(run, {"arch": arch}, {}, metrics, routing.compute(), ActivationBound(4, False, "dense"))
    folder.mkdir(parents=True)
    write_metrics_json(folder / "metrics.json", summary)
    return folder


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    gauc = {"smes": (0.70, 0.60), "mmoe": (0.65, 0.62), "ple": (0.66, math.nan)}
    auc = {"smes": (0.8, 0.7), "mmoe": (0.8, 0.6), "ple": (0.9, 0.7)}
    folders = {"smes": tmp_path / "smes" / "eval_test", "mmoe": tmp_path / "mmoe" / "eval_test",
               "ple": tmp_path / "ple_eval"}
    return [
        _write_eval(folder, arch, dict(zip(TASKS, gauc[arch], strict=True)), dict(zip(TASKS, auc[arch], strict=True)))
        for arch, folder in folders.items()
    ]


def test_deltas_against_the_chosen_baseline(three_runs: list[Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert compare_main([str(p) for p in three_runs] + ["--baseline", "mmoe", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    payload = json.loads((out / "compare.json").read_text())
    gauc, auc = payload["comparisons"]
    assert gauc["metric"] == "gauc" and gauc["baseline"] == "mmoe" and auc["metric"] == "auc"
    assert gauc["runs"] == ["smes", "mmoe", "ple_eval"]
    assert gauc["deltas"]["smes"]["click"] == pytest.approx(0.05)
    assert gauc["deltas"]["smes"]["like"] == pytest.approx(-0.02)
    assert gauc["deltas"]["mmoe"] == {"click": 0.0, "like": 0.0}
    assert gauc["deltas"]["ple_eval"]["click"] == pytest.approx(0.01)
    assert gauc["deltas"]["ple_eval"]["like"] is None  # undefined, not 0
    # The mean runs over the tasks every run defines (click only), so all means are comparable.
    assert gauc["common_tasks"] == ["click"]
    assert gauc["mean_delta"]["smes"] == pytest.approx(0.05)
    assert auc["deltas"]["ple_eval"]["click"] == pytest.approx(0.1)
    assert auc["mean_delta"]["smes"] == pytest.approx(0.05)  # (0.8 + 0.7) / 2 - (0.8 + 0.6) / 2
    assert "| smes | 0.7000 (+0.0500) | 0.6000 (-0.0200) | 0.7000 (+0.0500) |" in stdout
    assert "| mmoe (baseline) | 0.6500 | 0.6200 | 0.6500 |" in stdout
    assert "| ple_eval | 0.6600 (+0.0100) | n/a |" in stdout
    assert (out / "compare.png").stat().st_size > 1000
    assert "![gauc](compare.png)" in (out / "compare.md").read_text()


def test_default_baseline_is_the_first_and_names_can_be_given(three_runs: list[Path]) -> None:
    runs = [load_run(f"A={three_runs[1] / 'metrics.json'}"), load_run(f"B={three_runs[0]}")]
    comparison = compare_runs(runs, "gauc")
    assert comparison.baseline == "A" and comparison.runs == ("A", "B")
    assert comparison.deltas["B"]["click"] == pytest.approx(0.05)
    assert runs[0].arch == "mmoe" and runs[0].mean_unique == pytest.approx(2.0)


def test_bad_input(three_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_main([str(three_runs[0]), "--baseline", "nope"]) == 2
    assert "baseline 'nope' is not one of the runs ['smes']" in capsys.readouterr().err
    assert compare_main([str(three_runs[0]), str(three_runs[0])]) == 2
    assert "run names repeat: ['smes']" in capsys.readouterr().err
    assert compare_main([str(tmp_path / "missing")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert compare_main([str(tmp_path / "bad.json")]) == 2
    assert "not a metrics.json written by apps/evaluate.py" in capsys.readouterr().err
