"""The data section of a training config: which data, how it is split, batched and loaded.

Nest ``DataConfig`` in a training YAML (as ``data:``); every field has a default, so an empty section trains on the
built-in synthetic data. Relative paths in it (``schema``, ``files``, ``data_root``, ``cache_dir``) resolve against
the current working directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DataConfig", "SplitConfig", "SyntheticConfig"]

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitConfig:
    """How rows are divided into train / valid / test.

    Attributes:
        by: ``random``: each row goes to a split by a seeded hash of (file name without its format suffix, row
            number), so the split is the same in every process, does not depend on the file list, and is the same
            for ``x.csv`` and ``x.parquet`` holding the same rows. ``time``: by the time column.
        fractions: With ``random``: the train, valid and test fractions (summing to 1).
        seed: With ``random``: the seed of the row hash.
        column: With ``time``: the column compared (default: the schema's ``time``).
        valid_start: With ``time``: rows with time ``>= valid_start`` are valid (or test), earlier ones train. A
            number compares numerically (e.g. ``20220418`` for KuaiRand's ``date``), text compares as text or as the
            column's date/timestamp type (e.g. ``"2022-04-18"``).
        test_start: With ``time``: rows with time ``>= test_start`` are test. None: no test rows.
    """

    by: Literal["random", "time"] = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    column: str | None = None
    valid_start: float | str | None = None
    test_start: float | str | None = None

    def __post_init__(self) -> None:
        if any(f < 0 or not math.isfinite(f) for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be non-negative and sum to 1, got {list(self.fractions)}")
        for name in ("valid_start", "test_start"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))  # numbers compare as floats
        if self.by == "time":
            if self.valid_start is None:
                raise ValueError("a time split needs valid_start")
            numeric = isinstance(self.valid_start, float)
            if self.test_start is not None and isinstance(self.test_start, float) != numeric:
                raise ValueError("valid_start and test_start must both be numbers or both be text")
            if self.test_start is not None and self.test_start < self.valid_start:  # type: ignore[operator]
                raise ValueError(f"test_start {self.test_start!r} is before valid_start {self.valid_start!r}")


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in synthetic data (KuaiRand log schema, see ``synthetic.py``), generated on first use.

    Attributes:
        num_rows: Impressions in the log.
        num_users: Users.
        num_items: Videos.
        seed: The generator seed: the same seed gives the same files.
        rows_per_file: Rows per Parquet shard.
        kind: The label model. ``kuairand_like`` (the default data): every task is a logistic model of one shared
            user-video affinity. ``heterogeneous``: MMoE-style task groups and segments (``synthetic.py``); the
            users, videos, impressions and columns are the same, only the labels differ.
        num_segments: ``heterogeneous``: latent segments (S >= 1), each with its own label functions; an
            impression's segment is (user segment + video segment) mod S, both observable (``onehot_feat2`` and the
            first ``tag``).
        relatedness: ``heterogeneous``: cosine between the weight vectors of the watch-time and the interaction
            task groups, in [-1, 1] (MMoE's task correlation knob).
        segment_shift: ``heterogeneous``: how far each segment's task weight vectors turn away from the shared
            ones, in [0, 1] (0: every segment has the same label function; 1: orthogonal, unrelated ones).
    """

    num_rows: int = 1_000_000
    num_users: int = 20_000
    num_items: int = 100_000
    seed: int = 0
    rows_per_file: int = 1_000_000
    kind: Literal["kuairand_like", "heterogeneous"] = "kuairand_like"
    num_segments: int = 4
    relatedness: float = 0.3
    segment_shift: float = 0.5

    def __post_init__(self) -> None:
        for name in ("num_rows", "num_users", "num_items", "rows_per_file", "num_segments"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.kind not in ("kuairand_like", "heterogeneous"):
            raise ValueError(f"kind must be kuairand_like or heterogeneous, got {self.kind!r}")
        if not -1.0 <= self.relatedness <= 1.0:
            raise ValueError(f"relatedness must be in [-1, 1], got {self.relatedness}")
        if not 0.0 <= self.segment_shift <= 1.0:
            raise ValueError(f"segment_shift must be in [0, 1], got {self.segment_shift}")


@dataclass(frozen=True)
class DataConfig:
    """Data for training and evaluation.

    Attributes:
        schema: A schema YAML file, or ``synthetic`` for the built-in synthetic data.
        files: Data files or globs; overrides the schema's ``files``.
        data_root: Overrides the schema's ``data_root`` (what relative paths in the schema resolve against).
        split: How rows are split into train / valid / test.
        batch_size: Rows per batch (per rank). Every batch has exactly this many rows: the train split drops the
            rows that do not fill a last batch; valid/test pad it (see ``pad_eval``).
        num_workers: DataLoader worker processes per rank (0: load in the main process).
        pin_memory: Pin batches in page-locked memory (only when CUDA is available).
        shuffle: Shuffle the train split (valid/test are never shuffled).
        seed: The shuffle seed; with the epoch it fixes the order of the train batches. None: a training run's
            ``seed`` (so one seed sets initialisation and data order), 0 elsewhere.
        block_rows: Rows a worker reads and prepares at once (rounded down to whole batches); also the window rows
            are shuffled within.
        prefetch_factor: Blocks prepared ahead per worker.
        csv_unit_rows: Lines per independently readable piece of a CSV file.
        pad_eval: Pad the last valid/test batch with rows of weight 0 and group id -1 so every row is evaluated
            once. False: drop them, like the train split.
        cache_dir: Where synthetic data and dense statistics are cached (default: ``$SMES_REC_CACHE``, else
            ``$XDG_CACHE_HOME/smes_rec``, else ``~/.cache/smes_rec``).
        synthetic: The synthetic generator's parameters (with ``schema: synthetic``).
    """

    schema: str = "synthetic"
    files: tuple[str, ...] = ()
    data_root: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    batch_size: int = 4096
    num_workers: int = 2
    pin_memory: bool = True
    shuffle: bool = True
    seed: int | None = None
    block_rows: int = 131072
    prefetch_factor: int = 2
    csv_unit_rows: int = 65536
    pad_eval: bool = True
    cache_dir: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "block_rows", "prefetch_factor", "csv_unit_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
