"""Finding a checkpoint, rebuilding its run config, and checking that it fits the data it is evaluated on.

A training checkpoint (``smes_rec.train.checkpoint``) is a folder ``<output_dir>/checkpoints/step_XXXXXXXXX`` whose
``meta.json`` holds the whole training config and a fingerprint of the data the model was built for (tasks,
sparse features, embedding tables, number of dense features). Evaluation rebuilds the model from that config and
refuses data whose fingerprint differs, naming every difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smes_rec.data.fitted import META_KEY, FittedTransform, TransformError
from smes_rec.data.schema import DataError
from smes_rec.models.sparse import TableSpec
from smes_rec.train.checkpoint import CheckpointDamagedError, CheckpointManager, verify_checkpoint
from smes_rec.train.config import TrainConfig
from smes_rec.utils.config import ConfigError, apply_overrides, from_mapping

__all__ = [
    "OVERRIDABLE",
    "SchemaMismatchError",
    "check_fingerprint",
    "data_fingerprint",
    "fitted_transform_for",
    "load_run_config",
    "resolve_checkpoint",
    "run_dir_of",
]

# Top-level config keys an evaluation may override: the data (which files, split, batch size, ...) and where the
# model runs. Everything that shapes the model comes from the checkpoint.
OVERRIDABLE = ("data", "device", "sharding")


class SchemaMismatchError(ValueError):
    """The data does not have the shape the checkpoint's model was built for."""


def resolve_checkpoint(path: str | Path) -> Path:
    """Turns a user's ``--checkpoint`` into one verified checkpoint folder.

    Args:
        path: A checkpoint folder (``step_XXXXXXXXX`` with ``meta.json``), a ``checkpoints`` folder, or a run's
            ``output_dir`` (holding ``checkpoints/``); the last two mean the newest committed checkpoint in them.

    Returns:
        The checkpoint folder, checked against its manifest.

    Raises:
        FileNotFoundError: If the path does not exist or holds no checkpoint.
        CheckpointDamagedError: The checkpoint (the newest one, for a folder of checkpoints) is incomplete or
            damaged: the message names the bad file and, for a folder, the newest intact checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if (path / "meta.json").is_file() or path.name.startswith("step_"):
        verify_checkpoint(path)
        return path
    for root in (path, path / "checkpoints"):
        manager = CheckpointManager(root)
        latest = manager.latest()  # a folder without meta.json or manifest.json was never committed
        if latest is None:
            continue
        try:
            verify_checkpoint(latest)
        except CheckpointDamagedError as e:
            intact, _ = manager.latest_intact()
            hint = f"the newest intact one is {intact}: pass it" if intact else "no intact checkpoint is left"
            raise CheckpointDamagedError(f"{e}; {hint}") from None
        return latest
    raise FileNotFoundError(
        f"{path} holds no complete checkpoint: pass a checkpoint folder (step_XXXXXXXXX with meta.json), a "
        "checkpoints/ folder or a run's output_dir"
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run's output folder of a checkpoint (``<output_dir>/checkpoints/step_X`` -> ``<output_dir>``)."""
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def load_run_config(meta: Mapping[str, Any], overrides: Sequence[str] = (), source: str | None = None) -> TrainConfig:
    """The training config saved in a checkpoint, with ``key.path=value`` overrides of the data section applied.

    Args:
        meta: The checkpoint's ``meta.json``.
        overrides: ``data.xxx=value`` (also ``device=`` and ``sharding=``); model and optimizer keys are refused,
            because the weights fix them.
        source: The checkpoint, for error messages.

    Returns:
        The config.

    Raises:
        ConfigError: If the checkpoint holds no config, the config no longer parses, or an override is not
            allowed or not valid.
    """
    where = source or "checkpoint"
    if not isinstance(meta.get("config"), Mapping) or not meta["config"]:
        raise ConfigError(f"{where}: meta.json holds no training config (written by an older smes-rec?)")
    try:
        cfg = from_mapping(TrainConfig, meta["config"], source=f"{where}/meta.json config")
    except ConfigError as e:
        raise ConfigError(f"{e} (the checkpoint's config does not match this version of TrainConfig)") from None
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] not in OVERRIDABLE:
            raise ConfigError(
                f"override {item!r}: evaluation may only override data.*, device and sharding; the model and "
                "optimizer come from the checkpoint"
            )
    return apply_overrides(cfg, overrides)


def data_fingerprint(
    task_names: Sequence[str], feature_names: Sequence[str], tables: Sequence[TableSpec], num_dense: int
) -> dict[str, Any]:
    """The data shape a model is built for, in the format training saves in ``meta.json``."""
    return {
        "tasks": list(task_names),
        "features": list(feature_names),
        "tables": [[t.name, t.num_embeddings, t.dim, list(t.feature_names)] for t in tables],
        "num_dense": num_dense,
    }


def _list_diff(kind: str, saved: Sequence[Any], current: Sequence[Any]) -> str | None:
    saved, current = list(saved), list(current)
    if saved == current:
        return None
    missing = [x for x in saved if x not in current]
    extra = [x for x in current if x not in saved]
    parts = []
    if missing:
        parts.append(f"in the checkpoint but not in the data: {missing}")
    if extra:
        parts.append(f"in the data but not in the checkpoint: {extra}")
    if not parts:
        parts.append(f"same names in another order: checkpoint {saved}, data {current}")
    return f"{kind} differ ({'; '.join(parts)})"


def _table_diffs(saved: Sequence[Sequence[Any]], current: Sequence[Sequence[Any]]) -> list[str]:
    by_name_saved = {t[0]: t for t in saved}
    by_name_current = {t[0]: t for t in current}
    diffs = []
    names = _list_diff("embedding tables", list(by_name_saved), list(by_name_current))
    if names:
        diffs.append(names)
    for name, s in by_name_saved.items():
        c = by_name_current.get(name)
        if c is None:
            continue
        for i, field in ((1, "num_embeddings"), (2, "dim"), (3, "features")):
            differs = list(s[i]) != list(c[i]) if field == "features" else s[i] != c[i]
            if differs:
                diffs.append(f"table {name!r}: {field} is {s[i]} in the checkpoint, {c[i]} in the data")
    return diffs


def check_fingerprint(saved: Mapping[str, Any] | None, current: Mapping[str, Any], checkpoint: str | Path) -> None:
    """Raises unless the data has exactly the shape the checkpoint's model was built for.

    Args:
        saved: The checkpoint's ``data_fingerprint`` (None for a checkpoint without one: nothing to check).
        current: :func:`data_fingerprint` of the data to evaluate on.
        checkpoint: The checkpoint, for the message.

    Raises:
        SchemaMismatchError: Naming every difference: tasks, sparse features, embedding tables (names, sizes,
            widths, features) and the number of dense features.
    """
    if saved is None:
        return
    diffs = []
    for key, kind in (("tasks", "tasks"), ("features", "sparse features")):
        d = _list_diff(kind, saved.get(key, []), current[key])
        if d:
            diffs.append(d)
    diffs.extend(_table_diffs(saved.get("tables", []), current["tables"]))
    if saved.get("num_dense") != current["num_dense"]:
        diffs.append(f"dense features: {saved.get('num_dense')} in the checkpoint, {current['num_dense']} in the data")
    if diffs:
        raise SchemaMismatchError(
            f"checkpoint {checkpoint} does not match the data schema:\n  - " + "\n  - ".join(diffs)
            + "\nEvaluate with the data the model was trained on (see --set data.schema=... / data.files=...)"
        )


def fitted_transform_for(meta: Mapping[str, Any], checkpoint: str | Path) -> FittedTransform:
    """The feature transform fitted at training, which evaluation must use whatever files it reads.

    A checkpoint written before transforms were stored has none: it is then refitted, with a warning, on the train
    split of the *checkpoint's own* data config (not the evaluation's overrides), which reproduces what training
    computed as long as those files are unchanged.

    Args:
        meta: The checkpoint's ``meta.json``.
        checkpoint: The checkpoint folder.

    Returns:
        The transform.

    Raises:
        TransformError: A stored transform that does not parse, or an old checkpoint whose training data can no
            longer be read to refit it.
    """
    if META_KEY in meta:
        return FittedTransform.from_dict(meta[META_KEY], source=f"{checkpoint}/meta.json: {META_KEY}")
    from smes_rec.data.source import DataSource

    train_data = load_run_config(meta, (), source=str(checkpoint)).data
    try:
        source = DataSource.open(train_data)
        if not source.schema.dense_to_fit and not source.schema.vocab_tables:
            return FittedTransform()  # nothing was fitted: nothing to differ
        warnings.warn(f"{checkpoint}: no stored fitted transform (written by an older smes-rec); refitting it on the "
                      "train split of the checkpoint's own data config", stacklevel=2)
        return source.fitted_transform()
    except (ConfigError, DataError, OSError) as e:
        raise TransformError(f"{checkpoint} stores no fitted transform (written by an older smes-rec) and its "
                             f"training data cannot be read to refit it: {e}") from None
