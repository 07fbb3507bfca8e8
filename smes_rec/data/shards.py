"""Shards: write a stream of rows into numbered Parquet files of bounded size (generated and converted data sets)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ShardWriter"]


class ShardWriter:
    """Writes tables or record batches into ``folder/part-00000.parquet``, ``part-00001.parquet``, ...

    A shard ends when it holds ``rows_per_file`` rows or (without a fixed ``schema``) where the schema of the
    incoming rows changes; a shard is only created when rows arrive, so no shard is empty. Use as a context manager
    (closing the last shard).

    Args:
        folder: The output folder (must exist).
        rows_per_file: The most rows per shard.
        row_group_rows: Rows per Parquet row group.
        schema: The schema of every shard (None: that of the first rows written to it).
    """

    def __init__(self, folder: str | Path, rows_per_file: int, row_group_rows: int,
                 schema: pa.Schema | None = None) -> None:
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
        self.folder, self.rows_per_file, self.row_group_rows = Path(folder), rows_per_file, row_group_rows
        self.schema = schema
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def write(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Appends ``rows``, starting new shards as needed."""
        start = 0
        while start < rows.num_rows:
            full = self._in_file >= self.rows_per_file
            if self._writer is not None and (full or (self.schema is None and self._writer.schema != rows.schema)):
                self._end_shard()
            if self._writer is None:
                self.files.append(self.folder / f"part-{len(self.files):05d}.parquet")
                self._writer = pq.ParquetWriter(self.files[-1], self.schema or rows.schema)
            take = min(rows.num_rows - start, self.rows_per_file - self._in_file)
            self._writer.write(rows.slice(start, take), row_group_size=self.row_group_rows)
            start += take
            self._in_file += take

    def _end_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer, self._in_file = None, 0

    def close(self) -> None:
        """Closes the last shard."""
        self._end_shard()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
