"""Several evaluations side by side: one table per metric with deltas against a baseline, and one chart.

A run is an evaluation output folder (holding ``metrics.json``) or a ``metrics.json`` file, optionally named as
``NAME=PATH``. Without a name, a folder ``<run>/eval_<split>`` is named ``<run>``'s folder name, any other folder
by its own name.

For each metric, ``delta = value(run) - value(baseline)`` per task (in absolute metric units: +0.01 GAUC is one
point). The ``mean`` column averages each run over the *common* tasks (those where every run's metric is
defined), so the means of different runs are comparable; tasks where a metric is undefined show ``n/a``. A metric
that no task defines in every run is reported as not comparable instead of as a table.

:func:`run_differences` names what makes runs not directly comparable: another split, checkpoint step, evaluation
data (its fingerprint) or task set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from smes_rec.evaluation.report import json_safe, metrics_from_json, pyplot, read_metrics_json
from smes_rec.metrics import TaskMetrics

__all__ = [
    "Comparison",
    "RunMetrics",
    "compare_runs",
    "comparison_chart",
    "comparison_markdown",
    "load_run",
    "run_differences",
]

COMPARABLE = ("auc", "gauc", "gauc_uniform", "log_loss", "ne", "calibration")


class RunMetrics(NamedTuple):
    """One evaluated run.

    Attributes:
        name: The run's name in tables and charts.
        path: Its ``metrics.json``.
        tasks: Per-task metrics.
        arch: The model arch (None when the file does not say).
        mean_unique: Mean experts executed per instance (None when the file does not say).
        split: The evaluated split (None when the file does not say).
        step: The checkpoint's step (None when the file does not say).
        data_fingerprint: The evaluation data's fingerprint (None when the file does not say).
    """

    name: str
    path: Path
    tasks: dict[str, TaskMetrics]
    arch: str | None
    mean_unique: float | None
    split: str | None = None
    step: int | None = None
    data_fingerprint: str | None = None


class Comparison(NamedTuple):
    """One metric of several runs, with deltas against a baseline.

    Attributes:
        metric: The TaskMetrics field compared.
        baseline: The baseline run's name.
        runs: Run names, in the given order.
        tasks: The baseline's tasks, in its order.
        common_tasks: Tasks where every run's metric is defined (what ``mean`` averages over).
        values: ``values[run][task]`` (NaN when missing or undefined).
        deltas: ``deltas[run][task] = values[run][task] - values[baseline][task]``.
        mean: ``mean[run]``, over ``common_tasks`` (NaN if there is none).
        mean_delta: ``mean[run] - mean[baseline]``.
    """

    metric: str
    baseline: str
    runs: tuple[str, ...]
    tasks: tuple[str, ...]
    common_tasks: tuple[str, ...]
    values: dict[str, dict[str, float]]
    deltas: dict[str, dict[str, float]]
    mean: dict[str, float]
    mean_delta: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON (NaN as None)."""
        return json_safe(self._asdict())


def _default_name(metrics_path: Path) -> str:
    folder = metrics_path.parent
    if folder.name.startswith("eval_") and folder.parent.name:
        return folder.parent.name
    return folder.name or str(folder)


def load_run(spec: str) -> RunMetrics:
    """Loads ``PATH`` or ``NAME=PATH`` (an evaluation folder or its ``metrics.json``).

    Raises:
        FileNotFoundError: If there is no ``metrics.json`` there.
        ValueError: If the file is not an evaluation's ``metrics.json``.
    """
    name, sep, raw = spec.partition("=")
    if not sep:
        name, raw = "", spec
    path = Path(raw)
    metrics_path = path / "metrics.json" if path.is_dir() else path
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{raw}: no metrics.json (pass an evaluation output folder or its metrics.json)")
    try:
        summary = read_metrics_json(metrics_path)
        tasks = metrics_from_json(summary)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{metrics_path}: not a metrics.json written by apps/evaluate.py ({e!r})") from None
    routing = summary.get("routing") or {}
    mean_unique = routing.get("mean_unique_experts")
    run = summary.get("run") or {}
    return RunMetrics(
        name=name or _default_name(metrics_path),
        path=metrics_path,
        tasks=tasks,
        arch=run.get("arch"),
        mean_unique=None if mean_unique is None else float(mean_unique),
        split=run.get("split"),
        step=run.get("step"),
        data_fingerprint=run.get("data_fingerprint"),
    )


def run_differences(runs: Sequence[RunMetrics]) -> list[str]:
    """Sentences naming every way the runs are not directly comparable (empty when they are).

    Compares the evaluated split, the checkpoint step, the evaluation data's fingerprint and the task set.
    """
    out = []
    for field, what in (("split", "split"), ("step", "checkpoint step"), ("data_fingerprint", "evaluation data")):
        values = {r.name: getattr(r, field) for r in runs}
        if len({repr(v) for v in values.values()}) > 1:
            listed = ", ".join(f"{n}: {'unknown' if v is None else v}" for n, v in values.items())
            out.append(f"the runs differ in {what} ({listed})")
    task_sets = {r.name: tuple(r.tasks) for r in runs}
    if len({frozenset(t) for t in task_sets.values()}) > 1:
        common = set.intersection(*(set(t) for t in task_sets.values()))
        listed = "; ".join(f"{n}: {sorted(set(t) - common)}" for n, t in task_sets.items() if set(t) - common)
        out.append(f"the runs have different tasks (only in some runs: {listed}); only tasks every run has are "
                   f"compared in the means")
    return out


def _as_float(value: float | None) -> float:
    """A metric as a float; not available (GAUC without a group column) is NaN, shown as n/a."""
    return float("nan") if value is None else float(value)


def compare_runs(runs: Sequence[RunMetrics], metric: str = "gauc", baseline: str | None = None) -> Comparison:
    """Tabulates ``metric`` of every run with deltas against ``baseline`` (default: the first run).

    Args:
        runs: At least one run, with distinct names.
        metric: One of ``auc, gauc, gauc_uniform, log_loss, ne, calibration``.
        baseline: The name of the baseline run.

    Returns:
        The :class:`Comparison`.

    Raises:
        ValueError: No runs, repeated names, an unknown metric or baseline.
    """
    if not runs:
        raise ValueError("no runs to compare")
    names = [r.name for r in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"run names repeat: {repeated}; name them explicitly as NAME=PATH")
    if metric not in COMPARABLE:
        raise ValueError(f"metric must be one of {list(COMPARABLE)}, got {metric!r}")
    baseline = baseline if baseline is not None else names[0]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the runs {names}")
    base = runs[names.index(baseline)]
    tasks = tuple(base.tasks)
    values = {
        r.name: {t: _as_float(getattr(r.tasks[t], metric)) if t in r.tasks else float("nan") for t in tasks}
        for r in runs
    }
    deltas = {n: {t: values[n][t] - values[baseline][t] for t in tasks} for n in names}
    common = tuple(t for t in tasks if all(math.isfinite(values[n][t]) for n in names))
    mean = {n: float(np.mean([values[n][t] for t in common])) if common else float("nan") for n in names}
    mean_delta = {n: mean[n] - mean[baseline] for n in names}
    return Comparison(metric, baseline, tuple(names), tasks, common, values, deltas, mean, mean_delta)


def _cell(value: float, delta: float | None) -> str:
    if not math.isfinite(value):
        return "n/a"
    if delta is None:
        return f"{value:.4f}"
    return f"{value:.4f} ({delta:+.4f})" if math.isfinite(delta) else f"{value:.4f}"


def comparison_markdown(comparison: Comparison, runs: Sequence[RunMetrics] = ()) -> str:
    """A Markdown table: a row per run, a column per task plus the mean; deltas in parentheses.

    When no task has the metric defined in every run, a sentence saying so (and which runs lack it) instead.
    """
    c = comparison
    if not c.common_tasks:
        lacking = [n for n in c.runs if not any(math.isfinite(v) for v in c.values[n].values())]
        why = (f"{', '.join(lacking)} ha{'s' if len(lacking) == 1 else 've'} no defined {c.metric} for any task"
               if lacking else f"no task of {c.baseline} has a defined {c.metric} in every run")
        return f"**{c.metric}**: not comparable: {why}."
    unique = {r.name: r.mean_unique for r in runs}
    show_unique = any(v is not None for v in unique.values())
    header = ["run", *c.tasks, f"mean ({len(c.common_tasks)} tasks)"] + (["experts/instance"] if show_unique else [])
    lines = [
        f"**{c.metric}**, delta against `{c.baseline}` in parentheses",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for n in c.runs:
        is_base = n == c.baseline
        cells = [f"{n} (baseline)" if is_base else n]
        cells += [_cell(c.values[n][t], None if is_base else c.deltas[n][t]) for t in c.tasks]
        cells.append(_cell(c.mean[n], None if is_base else c.mean_delta[n]))
        if show_unique:
            u = unique.get(n)
            cells.append("n/a" if u is None else f"{u:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_chart(path: str | Path, comparison: Comparison) -> None:
    """Grouped bars of the metric per task and run (left) and the deltas against the baseline (right)."""
    plt = pyplot()
    c = comparison
    labels = [*c.tasks, "mean"]
    x = np.arange(len(labels))
    width = 0.8 / len(c.runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10.0, 1.6 * len(labels) + 4), 4.2))
    for i, n in enumerate(c.runs):
        vals = [c.values[n][t] for t in c.tasks] + [c.mean[n]]
        dels = [c.deltas[n][t] for t in c.tasks] + [c.mean_delta[n]]
        offset = (i - (len(c.runs) - 1) / 2) * width
        left.bar(x + offset, np.nan_to_num(vals, nan=0.0), width, label=n)
        right.bar(x + offset, np.nan_to_num(dels, nan=0.0), width, label=n)
    left.set_title(f"{c.metric} per task")
    right.set_title(f"{c.metric} minus baseline ({c.baseline})")
    right.axhline(0.0, color="k", lw=0.8)
    if c.metric in ("auc", "gauc", "gauc_uniform"):
        finite = [v for n in c.runs for v in c.values[n].values() if math.isfinite(v)]
        left.set_ylim(max(0.0, min(finite, default=0.5) - 0.05), min(1.0, max(finite, default=1.0) + 0.03))
    for ax in (left, right):
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
