"""Batch prediction: stream rows of files (or of a run's split) through a scorer into one Parquet file.

Memory is bounded by one unit of input (a Parquet row group or ``unit_rows`` CSV lines) plus one request batch.
Under ``torchrun`` every rank scores a contiguous share of the units (balanced by rows) into its own part file;
after every rank finished, rank 0 concatenates the parts in rank order, so the output keeps the input order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from tqdm import tqdm

from smes_rec.data.files import FileCache
from smes_rec.data.schema import DataError
from smes_rec.data.source import DataSource
from smes_rec.serving.rows import InputFile, RowChunk, RowReader, expand_inputs, request_tensors
from smes_rec.serving.scorer import Scorer, load_scorer

__all__ = ["PredictConfig", "PredictOutcome", "predict", "rank_share"]


@dataclass(frozen=True)
class PredictConfig:
    """One prediction job.

    Attributes:
        model: A serving package, or a checkpoint / checkpoints / run folder.
        out: The output Parquet file.
        data: Input files or globs (CSV, TSV, Parquet; ``.gz`` text too). Exclusive with ``split``.
        split: ``valid`` or ``test`` of the run's own data.
        keep: Input columns copied to the output.
        batch_size: Rows per model call.
        unit_rows: CSV lines read at once (Parquet reads whole row groups).
        progress: Show a progress bar (rank 0).
    """

    model: str
    out: str
    data: tuple[str, ...] = ()
    split: str | None = None
    keep: tuple[str, ...] = ()
    batch_size: int = 1024
    unit_rows: int = 65536
    progress: bool = True

    def __post_init__(self) -> None:
        if bool(self.data) == (self.split is not None):
            raise ValueError("give exactly one of --data FILE_OR_GLOB ... and --split valid|test")
        if self.split is not None and self.split not in ("train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, got {self.split!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class PredictOutcome(NamedTuple):
    """What a prediction job wrote: the file (rank 0), this rank's rows, and all ranks' rows."""

    out: Path
    rows: int
    total_rows: int


class WorkItem(NamedTuple):
    """One unit to score: the file, the unit, and its local rows to keep (None: all)."""

    file: InputFile
    unit: int
    select: np.ndarray | None

    @property
    def num_rows(self) -> int:
        return self.file.units[self.unit].num_rows if self.select is None else len(self.select)


def rank_share(row_counts: Sequence[int], rank: int, world_size: int) -> range:
    """The contiguous items of ``rank``: each item goes to the rank whose equal share of all rows holds its middle row.

    Balanced by rows, and the ranks' items in rank order are the items in order.

    Args:
        row_counts: Rows of every item, in order.
        rank: This rank.
        world_size: The number of ranks.

    Returns:
        The indices of this rank's items.
    """
    counts = np.asarray(row_counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    total = max(int(counts.sum()), 1)
    owner = np.minimum(((2 * starts + counts) * world_size) // (2 * total), world_size - 1)
    mine = np.flatnonzero(owner == rank)
    return range(int(mine[0]), int(mine[-1]) + 1) if len(mine) else range(0)


def work_items(cfg: PredictConfig, scorer: Scorer, file_cache: FileCache | None = None) -> list[WorkItem]:
    if cfg.split is None:  # PredictConfig holds exactly one of data and split
        files = expand_inputs(cfg.data, scorer.transform.schema, cfg.unit_rows, file_cache)
        return [WorkItem(f, u, None) for f in files for u in range(len(f.units))]
    # The run's own split: its files and split assignment; the transform stays the frozen one.
    source = DataSource.open(scorer.data, file_cache=file_cache)
    by_file = [InputFile(info, tuple(u for u in source.units if u.file == i)) for i, info in enumerate(source.files)]
    work = []
    for u, unit in enumerate(source.units):
        f = by_file[unit.file]
        rows = source.split_rows(u, cfg.split)
        if len(rows):
            work.append(WorkItem(f, f.units.index(unit), rows))
    return work


def _output_table(chunk: RowChunk, probs_TN: np.ndarray, tasks: Sequence[str]) -> pa.Table:
    cols = {"file": pa.array([chunk.file] * len(chunk.rows), pa.string()), "row": pa.array(chunk.rows, pa.int64())}
    for name in chunk.keep.column_names:
        cols[name] = chunk.keep.column(name)
    for t, task in enumerate(tasks):
        cols[f"p_{task}"] = pa.array(probs_TN[t], pa.float32())
    return pa.table(cols)


def _score(chunk: RowChunk, scorer: Scorer, batch_size: int) -> np.ndarray:
    n = len(chunk.rows)
    out = np.empty((len(scorer.tasks), n), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out[:, start:stop] = scorer.model(*request_tensors(chunk.columns, start, stop)).numpy()
    return out


def _chunks(work: Sequence[WorkItem], reader: RowReader) -> Iterator[RowChunk]:
    for w in work:
        yield reader.read(w.file, w.unit, w.select)


def _write(path: Path, chunks: Iterator[RowChunk], scorer: Scorer, batch_size: int, bar: tqdm) -> int:
    """Scores ``chunks`` into ``path`` (written under a temporary name, renamed when complete)."""
    tmp = path.with_name(path.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for chunk in chunks:
            table = _output_table(chunk, _score(chunk, scorer, batch_size), scorer.tasks)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            elif table.schema != writer.schema:
                table = _conform(table, writer.schema, chunk.file)
            writer.write_table(table)
            rows += table.num_rows
            bar.update(table.num_rows)
        if writer is None:  # nothing to score: an empty file with the identity and task columns
            empty = {"file": pa.array([], pa.string()), "row": pa.array([], pa.int64()),
                     **{f"p_{t}": pa.array([], pa.float32()) for t in scorer.tasks}}
            writer = pq.ParquetWriter(tmp, pa.table(empty).schema)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    return rows


def _conform(table: pa.Table, schema: pa.Schema, file: str) -> pa.Table:
    """Casts a chunk's ``--keep`` columns to the types of the first chunk's (files may store them differently)."""
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
        raise DataError(f"{file}: --keep columns {table.schema} cannot be written with the types of the first file "
                        f"({schema}): {e}") from None


def _concat_parts(parts: Sequence[Path], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    writer = None
    try:
        for p in parts:
            pf = pq.ParquetFile(p)
            if writer is None:
                writer = pq.ParquetWriter(tmp, pf.schema_arrow)
            for batch in pf.iter_batches():
                table = pa.Table.from_batches([batch])
                writer.write_table(table if table.schema == writer.schema else _conform(table, writer.schema, str(p)))
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, out)


def predict(cfg: PredictConfig) -> PredictOutcome:
    """Scores the inputs and writes ``cfg.out`` (one Parquet file; under torchrun assembled by rank 0).

    Output columns: ``file`` and ``row`` (0-based data row in that file), the ``keep`` columns, and
    ``p_<task>`` (float32 probability) per task.

    Raises:
        DataError: For a missing column or a bad cell (file, row and column named), as in training.
        FileNotFoundError: For an input pattern that matches nothing, or no model at ``cfg.model``.
    """
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")  # launched by torchrun
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = out.with_name(out.name + ".parts")
    failed, rows = 0, 0
    try:
        scorer = load_scorer(cfg.model)
        file_cache = FileCache()  # what scanning the inputs built, reused by the reader
        work = work_items(cfg, scorer, file_cache)
        mine = [work[i] for i in rank_share([w.num_rows for w in work], rank, world_size)]
        target = out
        if world_size > 1:
            parts_dir.mkdir(parents=True, exist_ok=True)
            target = parts_dir / f"part-{rank:05d}.parquet"
        bar = tqdm(total=sum(w.num_rows for w in mine), unit="row", desc=f"predict (rank {rank})",
                   disable=not cfg.progress or rank != 0)
        with bar:
            reader = RowReader(scorer.transform, cfg.keep, file_cache)
            rows = _write(target, _chunks(mine, reader), scorer, cfg.batch_size, bar)
    except BaseException:
        failed = 1
        raise
    finally:
        total = rows
        if world_size > 1:
            # Every rank reports success or failure, so a failing rank never leaves the others waiting.
            status = torch.tensor([failed, rows], dtype=torch.int64)
            dist.all_reduce(status)
            failed, total = int(status[0]), int(status[1])
            if not failed and rank == 0:
                _concat_parts([parts_dir / f"part-{r:05d}.parquet" for r in range(world_size)], out)
                shutil.rmtree(parts_dir)
            dist.barrier()
    if failed:
        raise RuntimeError("another rank failed; see its error") from None
    return PredictOutcome(out, rows, total)
