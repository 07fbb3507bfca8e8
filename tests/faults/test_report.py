"""Evaluation report and comparison: GAUC user counts and the unreliable flag; compare names run differences and
never presents an empty comparison as a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.compare import main as compare_main
from apps.evaluate import main as evaluate_main
from smes_rec.evaluation.report import MIN_GAUC_USERS, unreliable_gauc

STEP4 = "step_000000004"


@pytest.fixture(scope="module")
def evaluations(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Evaluations of the trained run: test split at step 8, valid split at step 4, test with another split seed."""
    out = tmp_path_factory.mktemp("faults_evals")
    runs = {
        "test8": [str(tiny_run), "--split", "test"],
        "valid4": [str(tiny_run / "checkpoints" / STEP4), "--split", "valid"],
        "reseeded": [str(tiny_run), "--split", "test", "--set", "data.split.seed=3"],
    }
    for name, args in runs.items():
        code = evaluate_main(["--checkpoint", args[0], *args[1:], "--out", str(out / name), "--max-batches", "4",
                              "--no-progress"])
        assert code == 0, name
    return {name: out / name for name in runs}


def test_report_shows_gauc_users_and_flags_few(evaluations: dict[str, Path]) -> None:
    folder = evaluations["test8"]
    tasks = json.loads((folder / "metrics.json").read_text())["tasks"]
    report = (folder / "report.md").read_text()
    few = unreliable_gauc(tasks)
    assert few == {t: m["num_groups"] for t, m in tasks.items() if m["num_groups"] < MIN_GAUC_USERS}
    assert few and len(few) < len(tasks)  # the tiny run has rare tasks (few users) and common ones
    assert "| GAUC users |" in report.splitlines()[report.splitlines().index("## Per-task metrics") + 4]
    for task, m in tasks.items():
        (row,) = [line for line in report.splitlines() if line.startswith(f"| {task} |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] == str(m["num_groups"])  # task, auc, gauc, GAUC users
        assert cells[2].endswith("(unreliable)") == (task in few)
        bullet = f"- **unreliable GAUC**: `{task}` averages only {m['num_groups']} user(s)"
        assert (bullet in report) == (task in few)


def test_report_with_gauc_not_available(evaluations: dict[str, Path], tmp_path: Path) -> None:
    from smes_rec.evaluation.report import write_report

    summary = json.loads((evaluations["test8"] / "metrics.json").read_text())
    for m in summary["tasks"].values():
        m["gauc"] = m["gauc_uniform"] = m["num_groups"] = None
    report = write_report(tmp_path, summary).read_text()
    (row,) = [line for line in report.splitlines() if line.startswith("| is_click |")]
    assert row.split("|")[3].strip() == "n/a" and row.split("|")[4].strip() == "n/a"
    assert "unreliable GAUC" not in report


def test_compare_names_every_difference(evaluations: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    summary = json.loads((evaluations["test8"] / "metrics.json").read_text())
    del summary["tasks"]["is_hate"]
    (fewer / "metrics.json").write_text(json.dumps(summary))
    specs = [f"{n}={p}" for n, p in evaluations.items()] + [f"fewer={fewer}"]
    assert compare_main(specs) == 0
    out = capsys.readouterr().out
    assert out.startswith("**Warning: these runs are not directly comparable**")
    assert "the runs differ in split (test8: test, valid4: valid, reseeded: test, fewer: test)" in out
    assert "the runs differ in checkpoint step (test8: 8, valid4: 4, reseeded: 8, fewer: 8)" in out
    prints = {n: json.loads((p / "metrics.json").read_text())["run"]["data_fingerprint"]
              for n, p in evaluations.items()}
    assert prints["test8"] == prints["valid4"] != prints["reseeded"]  # same data config; another split seed
    assert (f"the runs differ in evaluation data (test8: {prints['test8']}, valid4: {prints['valid4']}, reseeded: "
            f"{prints['reseeded']}, fewer: {prints['test8']})") in out
    assert "the runs have different tasks (only in some runs: test8: ['is_hate']; valid4: ['is_hate']" in out


def test_same_runs_compare_without_warning(evaluations: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_main([f"a={evaluations['test8']}", f"b={evaluations['test8']}"]) == 0
    out = capsys.readouterr().out
    assert "not directly comparable" not in out and "**gauc**" in out


def test_no_defined_metric_is_not_a_table(evaluations: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    no_gauc = tmp_path / "no_gauc"
    no_gauc.mkdir()
    summary = json.loads((evaluations["test8"] / "metrics.json").read_text())
    for m in summary["tasks"].values():
        m["gauc"] = None
    (no_gauc / "metrics.json").write_text(json.dumps(summary))
    specs = [f"a={evaluations['test8']}", f"b={no_gauc}"]

    assert compare_main([*specs, "--metric", "gauc"]) == 2
    captured = capsys.readouterr()
    assert "**gauc**: not comparable: b has no defined gauc for any task." in captured.out
    assert "mean (0 tasks)" not in captured.out and "| n/a |" not in captured.out
    assert "compare.py: error: nothing to compare" in captured.err

    assert compare_main([*specs, "--out", str(tmp_path / "cmp")]) == 0  # gauc and auc: auc is compared
    out = capsys.readouterr().out
    assert "**gauc**: not comparable" in out and "**auc**, delta against `a`" in out and "mean (0 tasks)" not in out
    assert (tmp_path / "cmp" / "compare.png").is_file()
