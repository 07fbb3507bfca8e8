"""The evaluation application: checkpoint + split -> ``metrics.json``, ``report.md`` with charts, predictions.

Two ways to run the model, with the same numbers:

- ``unsharded`` (one process, the default outside torchrun): the model is rebuilt unsharded on the CPU and the
  checkpoint's weights are loaded into it, whatever world size they were saved at.
- ``sharded`` (the default under torchrun with more than one process): every rank builds the training's sharded
  model without optimizers (``train.build.build_for_eval``), loads the weights (resharding as needed) and streams
  its share of the split through TorchRec's eval pipeline; metrics and telemetry are reduced exactly over the
  ranks and rank 0 writes the outputs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch.distributed as dist

from smes_rec.evaluation.checkpoint import (
    check_fingerprint,
    data_fingerprint,
    fitted_transform_for,
    load_run_config,
    resolve_checkpoint,
    run_dir_of,
)
from smes_rec.evaluation.report import build_summary, write_metrics_json, write_predictions, write_report
from smes_rec.evaluation.stream import EvalResult, evaluate_stream, unsharded_outputs
from smes_rec.evaluation.telemetry import activation_bound
from smes_rec.train.build import Placement, build_for_eval, build_train_wrapper
from smes_rec.train.checkpoint import CheckpointManager, load_weights
from smes_rec.train.config import TrainConfig
from smes_rec.train.data import LoaderSource
from smes_rec.train.distributed import init_distributed
from smes_rec.train.pipeline import agreed_batches, eval_outputs
from smes_rec.utils.config import to_mapping

__all__ = ["EmptySplitError", "EvalConfig", "EvalOutcome", "evaluate_checkpoint"]


class EmptySplitError(ValueError):
    """The split to evaluate has no rows."""


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation.

    Attributes:
        checkpoint: A checkpoint folder, a ``checkpoints`` folder or a run's ``output_dir`` (the latest checkpoint).
        split: ``valid`` or ``test``.
        out: The output folder (default: ``<output_dir>/eval_<split>``).
        overrides: ``key.path=value`` overrides of the checkpoint's data config (``data.*``, ``device``,
            ``sharding``).
        max_batches: Evaluate only the first batches (per process); None: the whole split.
        predictions: Also write ``predictions.parquet``.
        mode: ``auto`` (sharded under torchrun with several processes, else unsharded), ``unsharded``, ``sharded``.
        progress: Show a progress bar.
    """

    checkpoint: str
    split: Literal["valid", "test"] = "test"
    out: str | None = None
    overrides: tuple[str, ...] = ()
    max_batches: int | None = None
    predictions: bool = False
    mode: Literal["auto", "unsharded", "sharded"] = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("valid", "test"):
            raise ValueError(f"split must be valid or test, got {self.split!r}")
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {self.max_batches}")
        if self.mode not in ("auto", "unsharded", "sharded"):
            raise ValueError(f"mode must be auto, unsharded or sharded, got {self.mode!r}")


class EvalOutcome(NamedTuple):
    """What an evaluation produced.

    Attributes:
        out_dir: The output folder (written on rank 0 only).
        summary: The content of ``metrics.json``.
        result: The raw :class:`~smes_rec.evaluation.stream.EvalResult`.
    """

    out_dir: Path
    summary: dict[str, Any]
    result: EvalResult


def _env_world_size() -> int:
    if dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_data(data: LoaderSource, meta: dict[str, Any], checkpoint: Path, split: str, run_cfg: TrainConfig) -> None:
    """Schema and split size checks, before any model is built."""
    current = data_fingerprint(data.task_names, data.feature_names, data.tables, data.num_dense)
    check_fingerprint(meta.get("data_fingerprint"), current, checkpoint)
    rows = int(data.source.split_counts(split).sum())
    if rows == 0:
        split_cfg = to_mapping(run_cfg.data.split)
        raise EmptySplitError(
            f"the {split} split is empty: 0 of {data.source.num_rows} rows of {run_cfg.data.schema!r} fall in it "
            f"with data.split = {split_cfg}; change the split (--set data.split....) or evaluate another split"
        )


def eval_data_fingerprint(run_cfg: TrainConfig, meta: dict[str, Any]) -> str:
    """A short hash of what the evaluation read: the data's shape and the data config that selects its rows."""
    data = to_mapping(run_cfg.data)
    identity = {
        "shape": meta.get("data_fingerprint"),
        "data": {k: data.get(k) for k in ("schema", "files", "data_root", "split", "synthetic")},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run_info(cfg: EvalConfig, checkpoint: Path, meta: dict[str, Any], mode: str, world_size: int,
              result: EvalResult, run_cfg: TrainConfig) -> dict[str, Any]:
    """The ``run`` section of ``metrics.json``."""
    return {
        "checkpoint": str(checkpoint),
        "step": meta.get("step"),
        "arch": run_cfg.model.arch,
        "split": cfg.split,
        "data_fingerprint": eval_data_fingerprint(run_cfg, meta),
        "world_size_trained": meta.get("world_size"),
        "world_size_evaluated": world_size,
        "mode": mode,
        "max_batches": cfg.max_batches,
        "num_batches": result.num_batches,
        "seconds": result.seconds,
    }


def _unsharded(cfg: EvalConfig, checkpoint: Path, meta: dict[str, Any], run_cfg: TrainConfig) -> EvalResult:
    """One process, no process group: the model rebuilt unsharded on the CPU, the checkpoint's weights loaded."""
    data = LoaderSource(run_cfg.data, 0, 1, fitted_transform_for(meta, checkpoint))
    _check_data(data, meta, checkpoint, cfg.split, run_cfg)
    wrapper = build_train_wrapper(run_cfg.model, data, "cpu")
    load_weights(checkpoint, wrapper, no_dist=True)  # resolve_checkpoint verified it
    total = data.num_batches(cfg.split)
    batches = itertools.islice(data.batches(cfg.split, 0, 0), cfg.max_batches)
    return evaluate_stream(
        unsharded_outputs(wrapper, batches), data.task_names, split=cfg.split, keep_predictions=cfg.predictions,
        progress=cfg.progress, total_batches=min(total, cfg.max_batches or total), grouped=data.has_groups,
    )


def _sharded(cfg: EvalConfig, checkpoint: Path, meta: dict[str, Any], run_cfg: TrainConfig) -> EvalResult:
    """Every rank: the sharded model (no optimizers) with the checkpoint's weights, its share of the split, exact
    reduce."""
    ctx = init_distributed(run_cfg.device)
    data = LoaderSource(run_cfg.data, ctx.rank, ctx.world_size, fitted_transform_for(meta, checkpoint))
    _check_data(data, meta, checkpoint, cfg.split, run_cfg)
    model = build_for_eval(run_cfg.model, data, Placement(run_cfg.sharding, ctx.device, run_cfg.data.batch_size))
    load_weights(checkpoint, model)  # every rank its shards, at any world size (resolve_checkpoint verified it)
    total = data.num_batches(cfg.split)
    batches = agreed_batches(data, cfg.split, ctx.device, limit=cfg.max_batches)
    return evaluate_stream(
        eval_outputs(model, batches, ctx.device), data.task_names, split=cfg.split,
        process_group=dist.group.WORLD, keep_predictions=cfg.predictions, progress=cfg.progress and ctx.rank == 0,
        total_batches=min(total, cfg.max_batches or total), grouped=data.has_groups,
    )


def evaluate_checkpoint(cfg: EvalConfig) -> EvalOutcome:
    """Evaluates a checkpoint on a split and writes ``metrics.json``, ``report.md``, charts and predictions.

    Args:
        cfg: What to evaluate and where to write.

    Returns:
        The :class:`EvalOutcome` (every rank gets the metrics; rank 0 wrote the files).

    Raises:
        FileNotFoundError: No checkpoint at ``cfg.checkpoint``.
        ConfigError: The checkpoint's config does not load, or an override is invalid.
        SchemaMismatchError: The data's tasks, features, tables or dense features differ from the checkpoint's.
        DataError: The group column (or another) is missing from the files. Data without a group column is
            evaluated without GAUC (reported as not available).
        EmptySplitError: The split has no rows.
        ValueError: NaN predictions or labels (naming split, batch and task), or another invalid value.
    """
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    meta = CheckpointManager.read_meta(checkpoint)
    run_cfg = load_run_config(meta, cfg.overrides, source=str(checkpoint))
    world_size = _env_world_size()
    mode = cfg.mode if cfg.mode != "auto" else ("sharded" if world_size > 1 else "unsharded")
    if mode == "unsharded" and world_size > 1:
        raise ValueError("the unsharded mode runs in one process; launch it without torchrun or use --mode sharded")
    result = (_sharded if mode == "sharded" else _unsharded)(cfg, checkpoint, meta, run_cfg)
    world_size = dist.get_world_size() if mode == "sharded" else 1
    model_cfg = to_mapping(run_cfg.model)
    num_tasks = len(result.metrics)
    bound = activation_bound(run_cfg.model, num_tasks, int(result.routing.pairs_E.numel()))
    summary = build_summary(_run_info(cfg, checkpoint, meta, mode, world_size, result, run_cfg), model_cfg,
                            to_mapping(run_cfg.data), result.metrics, result.routing, bound)
    out = Path(cfg.out) if cfg.out else run_dir_of(checkpoint) / f"eval_{cfg.split}"
    if mode == "unsharded" or dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_metrics_json(out / "metrics.json", summary)
        write_report(out, summary)
        if result.predictions is not None:
            write_predictions(out / "predictions.parquet", result.predictions)
    return EvalOutcome(out, summary, result)
