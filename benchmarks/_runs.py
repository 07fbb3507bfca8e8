"""Shared machinery of the quality benchmarks (quality.py, study.py): train a run in this process, evaluate its final
checkpoint on one or more splits, keep a record on disk, read finished runs back, and summarise over seeds.

A finished run directory holds ``record.json`` and ``eval_<split>/metrics.json`` for every split it was evaluated
on; anything else there (a crashed run's partial checkpoint or logs) is not a finished run.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smes_rec.evaluation.app import EvalConfig, evaluate_checkpoint
from smes_rec.evaluation.report import read_metrics_json
from smes_rec.models.factory import build_ranker
from smes_rec.modules.cost import arch_cost
from smes_rec.train.app import run
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.config import TrainConfig
from smes_rec.utils.cli import closing_process_group

__all__ = ["arch_overrides", "dense_cost", "load_finished", "mean_std", "pm", "throughput", "train_and_evaluate"]


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std of the finite values (std 0 for one value; NaN, NaN for none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def pm(values: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± std`` of the values, or ``n/a``."""
    mean, std = mean_std(values)
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def throughput(run_dir: Path) -> float:
    """Training examples/s over the logged intervals after the first (pipeline warm-up), from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    rates = [e.value for e in acc.Scalars("throughput/examples_per_s")]
    steady = rates[1:] or rates
    # Equal examples per interval: the aggregate rate is the harmonic mean of the interval rates.
    return len(steady) / sum(1.0 / r for r in steady)


def arch_overrides(name: str, max_steps: int) -> list[str]:
    """The config overrides that select arch ``name`` (the sparse RankMixer is ``rankmixer`` with a switch).

    MoME's stage 1 is the first fifth of the steps; MoME's and sparse RankMixer's auxiliary losses carry their own
    lambda, so their runs set ``model.aux_loss_weight=1``.
    """
    if name == "rankmixer_sparse":
        return ["model.arch=rankmixer", "model.rankmixer_sparse=true", "model.aux_loss_weight=1.0"]
    if name == "mome":
        return ["model.arch=mome", f"model.mome_warmup_steps={max(1, max_steps // 5)}", "model.aux_loss_weight=1.0"]
    return [f"model.arch={name}"]


def dense_cost(cfg: TrainConfig, meta: dict[str, Any]) -> dict[str, float]:
    """Parameters of the dense model (bottom, arch, towers), and the arch's own cost (``arch_cost``)."""
    from smes_rec.models.sparse import TableSpec

    fp = meta["data_fingerprint"]
    tables = [TableSpec(t[0], t[1], t[2], tuple(t[3])) for t in fp["tables"]]
    ranker = build_ranker(cfg.model, tables, fp["features"], fp["num_dense"], len(fp["tasks"]), "meta",
                          task_names=fp["tasks"])
    cost = arch_cost(ranker.dense_model.arch, ranker.dense_model.bottom.out_features)
    return {"dense_params": sum(p.numel() for p in ranker.dense_model.parameters()),
            "arch_params": cost.total_params, "arch_active_params": cost.active_params,
            "arch_flops": cost.flops_per_instance}


def train_and_evaluate(cfg: TrainConfig, splits: Sequence[str], predictions: Sequence[str] = (),
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains one run (stdout to train.log), evaluates its final checkpoint, and writes and returns its record.

    Args:
        cfg: The run's config (``output_dir`` is the run directory).
        splits: The splits to evaluate on (``eval_<split>/`` each).
        predictions: Splits whose per-row predictions are kept (``eval_<split>/predictions.parquet``).
        extra: More fields for ``record.json``.

    Returns:
        The record (``record.json``'s fields) with ``metrics``: the ``metrics.json`` content per split.
    """
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log), closing_process_group():
        run(cfg, progress=False)
    train_seconds = time.perf_counter() - start
    checkpoint = CheckpointManager(run_dir / "checkpoints").latest()
    metrics = {}
    for split in splits:
        eval_cfg = EvalConfig(checkpoint=str(checkpoint), split=split, out=str(run_dir / f"eval_{split}"),
                              progress=False, predictions=split in predictions)
        metrics[split] = evaluate_checkpoint(eval_cfg).summary
    record = {
        "arch": cfg.model.arch,
        "seed": cfg.seed,
        "train_seconds": train_seconds,
        "examples_per_s": throughput(run_dir),
        **dense_cost(cfg, CheckpointManager.read_meta(checkpoint)),
        **(extra or {}),
    }
    (run_dir / "record.json").write_text(json.dumps(record, indent=2))
    return {**record, "metrics": metrics}


def load_finished(run_dir: Path, splits: Sequence[str]) -> dict[str, Any] | None:
    """The record of a finished run (evaluated on every split in ``splits``), or None."""
    record = run_dir / "record.json"
    files = {split: run_dir / f"eval_{split}" / "metrics.json" for split in splits}
    if not record.is_file() or not all(f.is_file() for f in files.values()):
        return None
    return {**json.loads(record.read_text()), "metrics": {s: read_metrics_json(f) for s, f in files.items()}}
