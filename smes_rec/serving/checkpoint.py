"""A training checkpoint of any world size -> the unsharded ranker, its run config and its frozen transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from smes_rec.evaluation.checkpoint import (
    check_fingerprint,
    data_fingerprint,
    fitted_transform_for,
    load_run_config,
    resolve_checkpoint,
)
from smes_rec.models.ranker import Ranker
from smes_rec.serving.transform import FrozenTransform
from smes_rec.train.build import build_train_wrapper
from smes_rec.train.checkpoint import CheckpointManager, load_weights
from smes_rec.train.config import TrainConfig
from smes_rec.train.data import LoaderSource

__all__ = ["LoadedCheckpoint", "load_checkpoint"]


class LoadedCheckpoint(NamedTuple):
    """A checkpoint ready for inference.

    Attributes:
        path: The checkpoint folder.
        meta: Its ``meta.json``.
        config: The run's training config.
        ranker: The unsharded ranker (CPU, eval mode) with the checkpoint's weights.
        data: The run's data (shape, splits, batches).
        transform: The frozen feature transform the run was trained with.
    """

    path: Path
    meta: dict[str, Any]
    config: TrainConfig
    ranker: Ranker
    data: LoaderSource
    transform: FrozenTransform


def load_checkpoint(checkpoint: str | Path) -> LoadedCheckpoint:
    """Loads a checkpoint saved at any world size into an unsharded ranker in this process.

    Args:
        checkpoint: A checkpoint folder, a ``checkpoints`` folder or a run's output folder (the latest checkpoint).

    Returns:
        The :class:`LoadedCheckpoint`.
    """
    path = resolve_checkpoint(checkpoint)
    meta = CheckpointManager.read_meta(path)
    cfg = load_run_config(meta, source=str(path))
    data = LoaderSource(cfg.data, 0, 1, fitted_transform_for(meta, path))  # the checkpoint's, never refitted
    check_fingerprint(meta.get("data_fingerprint"),
                      data_fingerprint(data.task_names, data.feature_names, data.tables, data.num_dense), path)
    wrapper = build_train_wrapper(cfg.model, data, "cpu")
    load_weights(path, wrapper, no_dist=True)  # resolve_checkpoint verified it
    return LoadedCheckpoint(path, meta, cfg, wrapper.model.eval(), data,
                            FrozenTransform(data.source.schema, data.fitted))
