"""benchmarks/study.py --quick end to end: every section's table and the plot exist, the report's numbers are the runs'
metrics files', the user-level bootstrap reproduces the library's GAUC, and a second invocation reuses every run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _study(out: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "study.py"), "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """Every Markdown table under its nearest preceding heading or bold title, as rows of cells (header included)."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for line in markdown.splitlines():
        if line.startswith("#") or line.startswith("**"):
            title = line
        elif line.startswith("| ") and not line.startswith("|---"):
            tables.setdefault(title, []).append([c.strip() for c in line.strip("|").split("|")])
    return tables


def _metrics(out: Path, key: str, split: str = "test") -> dict:
    return json.loads((out / "runs" / key / f"eval_{split}" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study")
    _study(out)
    return out


def test_report_has_every_section_and_the_plot(quick: Path) -> None:
    text = (quick / "results.md").read_text()
    assert "PARTIAL RUN" in text  # the quick preset never passes for the study
    for heading in ("## Comparison: heterogeneous synthetic set", "## Ablations", "## Scaling", "## Sensitivity",
                    "## What the numbers show", "## Recommendation"):
        assert heading in text, heading
    assert (quick / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](scaling.png)" in text
    assert "not measured" in text  # no serving results given: the p99 column says so


def test_tables_are_the_runs_metrics(quick: Path) -> None:
    data = json.loads((quick / "results.json").read_text())
    text = (quick / "results.md").read_text()
    tables = _tables(text)
    comparison = data["comparison"]["synthetic"]
    chosen = data["meta"]["chosen_lr"]["synthetic"]
    # The LR was chosen on valid: the chosen run has the best valid mean GAUC of its grid.
    for name, scores in data["meta"]["lr_grid"]["synthetic"].items():
        assert max(scores.values()) == scores[str(chosen[name])]  # JSON keys: the LRs as text
    for entry in data["runs"]:  # the LR choice read the preset's first 3 valid batches of 256 rows
        valid = _metrics(quick, entry["key"], "valid")
        assert 0 < next(iter(valid["tasks"].values()))["num_examples"] <= 3 * 256
    gauc = next(rows for title, rows in tables.items() if title.startswith("**Test GAUC"))
    assert gauc[0][-1] == "mean over tasks"
    labels = {"SMES-S": "smes_s", "SMES-L": "smes_l", "MMoE": "mmoe"}
    assert {row[0] for row in gauc[1:]} == set(labels)
    for row in gauc[1:]:
        entry = comparison[labels[row[0]]]
        assert entry["lr"] == chosen[labels[row[0]]]
        metrics = _metrics(quick, entry["keys"][0])
        tasks = list(metrics["tasks"])
        assert gauc[0][1:-1] == tasks
        for task, cell in zip(tasks, row[1:-1], strict=True):
            assert cell == f"{metrics['tasks'][task]['gauc']:.4f} ± 0.0000"
        assert row[-1] == f"{metrics['mean']['gauc']:.4f} ± 0.0000"
    # One seed: the bootstrap's point difference is the difference of the runs' metrics.json mean GAUCs, so the
    # per-user AUCs it resamples reproduce the library's GAUC.
    head = data["headline"]["synthetic"]
    smes = _metrics(quick, comparison["smes_s"]["keys"][0])["mean"]["gauc"]
    for name in ("smes_l", "mmoe"):
        other = _metrics(quick, comparison[name]["keys"][0])["mean"]["gauc"]
        assert head[name]["delta_gauc"] == pytest.approx(smes - other, abs=1e-9)
        lo, hi = head[name]["ci"]
        assert lo <= hi
    # Scaling rows are their runs' test metrics.
    scaling = next(rows for title, rows in tables.items() if title.startswith("## Scaling"))
    assert len(scaling) - 1 == len(data["scaling"]) == 4
    for row, entry in zip(scaling[1:], data["scaling"], strict=True):
        assert row[1] == str(entry["E"]) and row[5] == f"{entry['gauc']:.4f}"
    by_gauc = {f"{r['mean']['test']['gauc']:.4f}" for r in data["runs"] if "test" in r["mean"]}
    assert {row[5] for row in scaling[1:]} <= by_gauc
    # Ablation rows: the full model and the three switches, each with |U| and load CV.
    ablations = next(rows for title, rows in tables.items() if title.startswith("## Ablations"))
    assert [row[0] for row in ablations[1:]][1:] == [
        "SMES without task-shared experts (K_s = 0)", "SMES without task-adaptive experts (K_a = 0)",
        "SMES without the regulariser (beta = 0)"]
    for row in ablations[1:]:
        assert re.fullmatch(r"[0-9.]+ \(\d+\)", row[4]) and re.fullmatch(r"[0-9.]+ ± [0-9.]+", row[5])
    sensitivity = next(rows for title, rows in tables.items() if title.startswith("## Sensitivity"))
    assert len(sensitivity) == 3 and len(sensitivity[0]) == 3


def test_second_invocation_reuses_every_run(quick: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in (quick / "runs").glob("*/*/record.json")}
    before = json.loads((quick / "results.json").read_text())
    _study(quick)
    assert {p: p.stat().st_mtime_ns for p in (quick / "runs").glob("*/*/record.json")} == stamps
    after = json.loads((quick / "results.json").read_text())
    assert after["headline"] == before["headline"] and after["scaling"] == before["scaling"]


def test_serving_records_pick_one_point_per_arch_and_experts(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        from study import serving_records
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))

    def row(model: str, threads: int, C: int, p99: float) -> dict:
        return {"model": model, "threads": threads, "C": C, "p50_ms": p99 / 2, "p99_ms": p99}

    results = [row("smes int8", 1, 512, 1.5), row("smes int8", 2, 512, 9.0), row("smes fp32", 1, 512, 9.0),
               row("smes int8", 1, 64, 9.0), row("mmoe_E16 int8", 1, 512, 3.0), row("mmoe_E'5 int8", 1, 512, 9.0),
               row("naive_topk int8", 1, 512, 2.0)]
    path = tmp_path / "e16.json"
    path.write_text(json.dumps({"args": {"experts": 16}, "mean_u": 5.0, "results": results}))
    records = serving_records([str(path)], "int8", "1", "512")
    assert sorted((r["arch"], r["num_experts"], r["p99_ms"]) for r in records) == [
        ("mmoe", 16, 3.0), ("naive_topk", 16, 2.0), ("smes", 16, 1.5)]
    with pytest.raises(ValueError, match="no fp16 measurement"):
        serving_records([str(path)], "fp16", "1", "512")
    (tmp_path / "other.json").write_text(json.dumps([{"arch": "smes", "p99_ms": 1.0}]))
    with pytest.raises(ValueError, match="not a benchmarks/serving.py"):
        serving_records([str(tmp_path / "other.json")], "int8", "1", "512")
