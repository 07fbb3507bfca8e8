"""Writing an evaluation: ``metrics.json``, a Markdown report with charts, and the predictions as Parquet.

Legend: T tasks, E experts, U the |U| values 0..E.

``metrics.json`` (NaN written as null)::

    {"run": {checkpoint, step, arch, split, data_fingerprint, world_size_trained, world_size_evaluated, mode,
             max_batches, num_batches, seconds},
     "model": {the model config}, "data": {the data config},
     "tasks": {task: {auc, gauc, gauc_uniform, num_groups, log_loss, ne, calibration, positive_rate,
                      num_examples}},   (num_groups null: no group column, GAUC not available)
     "mean": {auc, gauc, gauc_uniform}  (over the tasks where the metric is defined),
     "routing": {num_experts, bound: {max_unique, sparse, note}, num_instances, mean_unique_experts,
                 max_unique_experts, unique_experts_histogram, selection, expert_pairs, expert_load_share,
                 expert_load_cv, expert_load_max_over_mean}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smes_rec.evaluation.telemetry import ActivationBound, RoutingSummary
from smes_rec.metrics import TaskMetrics
from smes_rec.utils.files import write_json

__all__ = [
    "FIGURES",
    "MIN_GAUC_USERS",
    "TABLE_COLUMNS",
    "build_summary",
    "metrics_from_json",
    "metrics_table",
    "read_metrics_json",
    "write_metrics_json",
    "write_predictions",
    "write_report",
]

TABLE_COLUMNS = ("auc", "gauc", "num_groups", "gauc_uniform", "log_loss", "ne", "calibration", "positive_rate",
                 "num_examples")
COLUMN_TITLES = {"num_groups": "GAUC users"}
# A GAUC averaged over fewer users than this is flagged as unreliable in the report.
MIN_GAUC_USERS = 30
FIGURES = {
    "gauc": "gauc_per_task.png",
    "selection": "selection_heatmap.png",
    "unique": "unique_experts_hist.png",
    "load": "expert_load.png",
}


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """The mean of the finite values; None when no value is available at all (GAUC without groups)."""
    if all(v is None for v in values):
        return None
    defined = [v for v in values if v is not None and math.isfinite(v)]
    return sum(defined) / len(defined) if defined else float("nan")


def build_summary(
    run: Mapping[str, Any],
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    metrics: Mapping[str, TaskMetrics],
    routing: RoutingSummary,
    bound: ActivationBound,
) -> dict[str, Any]:
    """Assembles the content of ``metrics.json`` (see the module docstring)."""
    return {
        "run": dict(run),
        "model": dict(model),
        "data": dict(data),
        "tasks": {task: m._asdict() for task, m in metrics.items()},
        "mean": {k: _mean_defined([getattr(m, k) for m in metrics.values()]) for k in ("auc", "gauc", "gauc_uniform")},
        "routing": {"num_experts": int(routing.pairs_E.numel()), "bound": bound._asdict(), **routing.to_dict()},
    }


def write_metrics_json(path: str | Path, summary: Mapping[str, Any]) -> None:
    """Writes the summary as strict JSON (NaN as null), atomically."""
    write_json(path, json_safe(summary), allow_nan=False)


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Reads a ``metrics.json`` written by :func:`write_metrics_json`."""
    return json.loads(Path(path).read_text())


def metrics_from_json(summary: Mapping[str, Any]) -> dict[str, TaskMetrics]:
    """The per-task metrics of a ``metrics.json`` (null back to NaN)."""
    out = {}
    for task, m in summary["tasks"].items():
        values: dict[str, Any] = {k: _nan(m[k]) for k in TaskMetrics._fields}
        values["num_examples"] = int(values["num_examples"])
        if m["num_groups"] is None:  # no group column: GAUC not available
            values.update(gauc=None, gauc_uniform=None, num_groups=None)
        else:
            values["num_groups"] = int(values["num_groups"])
        out[task] = TaskMetrics(**values)
    return out


def write_predictions(path: str | Path, columns: Mapping[str, np.ndarray]) -> None:
    """Writes prediction columns (see ``EvalResult.predictions``) to one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), str(path))


# -------------------------------------------------------------------------------------------------------- charts
def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only), imported when a chart is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: Any, column: str) -> str:
    if column in ("num_examples", "num_groups"):
        return "n/a" if value is None else str(int(value))
    value = _nan(value)
    return "n/a" if not math.isfinite(value) else f"{value:.4f}"


def _gauc_chart(path: Path, tasks: Mapping[str, Mapping[str, Any]], title: str) -> None:
    plt = pyplot()
    names = list(tasks)
    gauc = [_nan(tasks[t]["gauc"]) for t in names]
    auc = [_nan(tasks[t]["auc"]) for t in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4))
    ax.bar(x - 0.2, np.nan_to_num(gauc, nan=0.0), 0.4, label="GAUC (impression-weighted)", color="tab:blue")
    ax.bar(x + 0.2, np.nan_to_num(auc, nan=0.0), 0.4, label="AUC", color="tab:gray", alpha=0.6)
    for xi, g in zip(x, gauc, strict=True):
        ax.text(xi - 0.2, (g if math.isfinite(g) else 0.0) + 0.01, "n/a" if not math.isfinite(g) else f"{g:.3f}",
                ha="center", va="bottom", fontsize=7)
    ax.axhline(0.5, color="k", lw=0.8, ls="--", label="random (0.5)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _selection_heatmap(path: Path, selection_TE: np.ndarray, task_names: Sequence[str], num_instances: int) -> None:
    plt = pyplot()
    T, E = selection_TE.shape
    share_TE = selection_TE / max(num_instances, 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * E + 2.5), max(2.5, 0.45 * T + 1.5)))
    image = ax.imshow(share_TE, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(share_TE.max()), 1e-9))
    ax.set_xticks(range(E), [str(e) for e in range(E)], fontsize=7)
    ax.set_yticks(range(T), list(task_names), fontsize=8)
    ax.set_xlabel("expert")
    ax.set_title("task x expert selection (share of instances routed to the expert)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _unique_hist(path: Path, hist_U: np.ndarray, bound: ActivationBound, mean_unique: float) -> None:
    plt = pyplot()
    values = np.arange(len(hist_U))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(values, hist_U / max(hist_U.sum(), 1), width=0.8, color="tab:green")
    ax.axvline(bound.max_unique, color="tab:red", ls="--", lw=1.5,
               label=f"bound {bound.max_unique}" + ("" if bound.sparse else " (dense: all experts run)"))
    ax.axvline(mean_unique, color="k", ls=":", lw=1.2, label=f"mean {mean_unique:.2f}")
    ax.set_xlabel("|U|: experts executed per instance")
    ax.set_ylabel("share of instances")
    ax.set_xticks(values)
    ax.set_title(bound.note, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_chart(path: Path, share_E: np.ndarray, cv: float, max_over_mean: float) -> None:
    plt = pyplot()
    E = len(share_E)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * E + 2), 3.5))
    ax.bar(range(E), share_E, color="tab:purple")
    ax.axhline(1.0 / E, color="k", ls="--", lw=1, label=f"even load 1/E = {1.0 / E:.3f}")
    ax.set_xticks(range(E), [str(e) for e in range(E)], fontsize=7)
    ax.set_xlabel("expert")
    ax.set_ylabel("share of executed (instance, expert) pairs")
    ax.set_title(f"expert load: CV {cv:.3f}, max/mean {max_over_mean:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def unreliable_gauc(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """``{task: users}`` of the tasks whose GAUC is defined but averages fewer than :data:`MIN_GAUC_USERS` users."""
    return {
        task: int(m["num_groups"]) for task, m in tasks.items()
        if m.get("gauc") is not None and math.isfinite(_nan(m["gauc"])) and m.get("num_groups") is not None
        and int(m["num_groups"]) < MIN_GAUC_USERS
    }


def _gauc_cell(m: Mapping[str, Any], unreliable: bool) -> str:
    cell = _fmt(m.get("gauc"), "gauc")
    return f"{cell} (unreliable)" if unreliable else cell


def write_report(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Writes ``report.md`` and its four PNG charts next to it.

    Args:
        out_dir: The output folder (must exist).
        summary: The content of ``metrics.json`` (:func:`build_summary`).

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    run, tasks, routing = summary["run"], summary["tasks"], summary["routing"]
    task_names = list(tasks)
    bound = ActivationBound(**routing["bound"])
    title = f"{run['arch']} step {run['step']}, {run['split']} split"
    _gauc_chart(out / FIGURES["gauc"], tasks, f"GAUC per task: {title}")
    _selection_heatmap(out / FIGURES["selection"], np.asarray(routing["selection"], dtype=np.float64), task_names,
                       routing["num_instances"])
    _unique_hist(out / FIGURES["unique"], np.asarray(routing["unique_experts_histogram"], dtype=np.float64), bound,
                 _nan(routing["mean_unique_experts"]))
    _load_chart(out / FIGURES["load"], np.asarray([_nan(v) for v in routing["expert_load_share"]]),
                _nan(routing["expert_load_cv"]), _nan(routing["expert_load_max_over_mean"]))

    header = "| task | " + " | ".join(COLUMN_TITLES.get(c, c) for c in TABLE_COLUMNS) + " |"
    few = unreliable_gauc(tasks)
    lines = [
        f"# Evaluation: {title}",
        "",
        f"- checkpoint: `{run['checkpoint']}` (step {run['step']}, trained on {run['world_size_trained']} "
        f"process(es))",
        f"- evaluated: {run['mode']} on {run['world_size_evaluated']} process(es), {run['num_batches']} batch(es)"
        + (f" (capped by --max-batches {run['max_batches']})" if run.get("max_batches") else "")
        + f", {routing['num_instances']} instances, {run['seconds']:.1f} s",
        f"- model: `{run['arch']}`" + (f", E = {routing['num_experts']}" if routing["num_experts"] > 1 else ""),
        "",
        "## Per-task metrics",
        "",
        "GAUC weights each user by impressions; GAUC uniform is the plain mean over users. Both skip users with "
        "one class only; GAUC users is how many users they average over (over every evaluating process's rows). "
        f"A GAUC from fewer than {MIN_GAUC_USERS} users is marked unreliable. NE is log loss over the entropy of "
        "the positive rate; calibration is mean prediction over mean label.",
        "",
        *(["**GAUC is not available**: the data has no group column (`group:` in the schema), so there are no "
           "users to average a per-user AUC over; gauc and gauc_uniform show n/a.", ""]
          if all(m["num_groups"] is None for m in tasks.values()) else []),
        header,
        "|" + "---|" * (len(TABLE_COLUMNS) + 1),
    ]
    for task, m in tasks.items():
        cells = [_gauc_cell(m, task in few) if c == "gauc" else _fmt(m.get(c), c) for c in TABLE_COLUMNS]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    mean = summary["mean"]
    lines.append("| **mean** | " + " | ".join(_fmt(mean[c], c) if c in mean else "" for c in TABLE_COLUMNS) + " |")
    if few:
        lines += ["", *(f"- **unreliable GAUC**: `{task}` averages only {n} user(s) with both classes (fewer than "
                        f"{MIN_GAUC_USERS}); compare it with care" for task, n in few.items())]
    lines += [
        "",
        f"![GAUC per task]({FIGURES['gauc']})",
        "",
        "## Expert routing",
        "",
        f"- experts executed per instance |U|: mean {_fmt(routing['mean_unique_experts'], 'x')}, "
        f"max {routing['max_unique_experts']}; {bound.note}.",
    ]
    if not bound.sparse:
        lines.append("- This arch is dense: every expert runs on every instance, so |U| is constant and the load "
                     "is even by construction; the selection matrix shows which experts each task reads.")
    lines += [
        f"- expert load over executed (instance, expert) pairs: CV {_fmt(routing['expert_load_cv'], 'x')}, "
        f"max/mean {_fmt(routing['expert_load_max_over_mean'], 'x')}.",
        "",
        f"![|U| histogram]({FIGURES['unique']})",
        "",
        f"![task x expert selection]({FIGURES['selection']})",
        "",
        f"![expert load]({FIGURES['load']})",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def metrics_table(metrics: Mapping[str, TaskMetrics], columns: Sequence[str] = ("auc", "gauc", "log_loss")) -> str:
    """A Markdown table of per-task metrics (the console summary of training and evaluation).

    A metric that is not available (GAUC without groups) shows ``n/a``, explained under the table.

    Args:
        metrics: ``{task: TaskMetrics}``.
        columns: The metrics to show, as ``TaskMetrics`` field names.

    Returns:
        The table, one row per task plus an ``examples`` column.
    """
    header = "| task | " + " | ".join(columns) + " | examples |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for task, m in metrics.items():
        values = " | ".join("n/a" if getattr(m, c) is None else f"{getattr(m, c):.4f}" for c in columns)
        lines.append(f"| {task} | {values} | {m.num_examples} |")
    if any(getattr(m, c) is None for m in metrics.values() for c in columns):
        lines.append("\nn/a: GAUC is not available: the data has no group column (`group:` in the schema)")
    return "\n".join(lines)
