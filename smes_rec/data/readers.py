"""Readers: find the files of a data set, cut them into units that can be read independently, and read them.

A *unit* is the smallest piece of a file read at once: a row group of a Parquet file, or a run of up to
``unit_rows`` lines of a CSV/TSV file. Units let every rank and DataLoader worker read only its own part of the data.

CSV files are made randomly accessible by a line index built in one streaming pass (numpy over 8 MiB chunks, about
a GB/s): the byte offset of every ``unit_rows``-th line. Gzipped CSV is indexed the same way while it is
decompressed, keeping a copy of the zlib state every 32 MiB of output, so reading a unit decompresses at most that
much extra instead of the whole prefix. The index assumes one row per line: quoted fields containing line breaks
are detected (the parsed row count differs) and reported with a pointer to ``apps/prepare.py convert``, which
streams such files with pyarrow's CSV reader into Parquet.

Cells are parsed by ``pyarrow.csv`` with explicit column types (``float64`` for columns that are only used as
numbers, dictionary-encoded text otherwise), so the type of a column never depends on which rows a unit holds, and
each distinct id of a unit is cleaned and hashed once. Parquet text columns are read dictionary-encoded too.
"""

from __future__ import annotations

import glob
import io
import itertools
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from smes_rec.data.schema import DataError, DatasetSchema, Join, infer_format
from smes_rec.utils.config import ConfigError

__all__ = [
    "FileInfo",
    "RowContext",
    "Unit",
    "column_roles",
    "iter_batches",
    "read_side_table",
    "read_unit",
    "resolve_files",
    "resolve_join",
    "scan_file",
]

_CHUNK = 1 << 23  # bytes per read while indexing text files
_GZ_CHECKPOINT = 1 << 25  # decompressed bytes between saved zlib states
_GZ_READ = 1 << 20


@dataclass(frozen=True)
class Unit:
    """A piece of one file that is read at once.

    Attributes:
        file: Index of the file in the data set's file list.
        row_start: The 0-based data row of the file where the unit starts.
        num_rows: The number of data rows.
        start: Parquet: the row group; text: the byte offset (in decompressed bytes) of the first row.
        end: Text: the byte offset just past the last row; unused for Parquet.
    """

    file: int
    row_start: int
    num_rows: int
    start: int
    end: int = 0


@dataclass(frozen=True)
class FileInfo:
    """A scanned data file.

    Attributes:
        path: The absolute path.
        name: The path relative to the data root (stable across machines; used for seeded random splits).
        format: ``csv``, ``tsv`` or ``parquet``.
        gzip: Whether the text file is gzip-compressed.
        delimiter: The field delimiter of a text file.
        header: Whether the text file starts with a header line.
        column_names: The file's columns, in order.
        num_rows: The number of data rows.
        size: The file size in bytes (with ``mtime_ns``, identifies the file version in cache keys).
        mtime_ns: The modification time.
    """

    path: str
    name: str
    format: str
    gzip: bool
    delimiter: str
    header: bool
    column_names: tuple[str, ...]
    num_rows: int
    size: int
    mtime_ns: int

    def where(self, row: int, column: str | None = None) -> str:
        """Names a 0-based data row (and column) of this file for error messages."""
        text = f"{self.path}: row {row + 1}"
        if self.format != "parquet":
            text += f" (line {row + 1 + int(self.header)})"
        return text + (f", column {column!r}" if column is not None else "")


@dataclass(frozen=True)
class RowContext:
    """Where the rows of a table being processed came from, so errors can name file, row and column.

    Attributes:
        file: The source file.
        rows: ``[N]`` 0-based data rows in the file, one per table row.
    """

    file: FileInfo
    rows: np.ndarray

    def where(self, i: int, column: str | None = None) -> str:
        """Names table row ``i`` (and a column)."""
        return self.file.where(int(self.rows[i]), column)


# ------------------------------------------------------------------------------------------------- file discovery
def resolve_files(schema: DatasetSchema, patterns: Sequence[str] = ()) -> tuple[tuple[Path, str], ...]:
    """Expands the data file globs (``patterns`` or else ``schema.files``) against the schema's data root.

    Args:
        schema: A schema with an absolute ``data_root``.
        patterns: Overrides ``schema.files`` when not empty.

    Returns:
        ``(absolute path, name relative to the data root)`` pairs, sorted by name, without duplicates.

    Raises:
        ConfigError: When there are no patterns or a pattern matches no file.
    """
    key = "files" if patterns else "schema.files"
    patterns = tuple(patterns) or schema.files
    if not patterns:
        raise ConfigError(f"{key}: no data files given (set `files` in the schema or the data config)")
    root = Path(schema.data_root or ".")
    found: dict[str, tuple[Path, str]] = {}
    for i, pattern in enumerate(patterns):
        full = schema.resolve(pattern)
        matches = sorted(glob.glob(str(full))) if glob.has_magic(str(full)) else [str(full)] * full.is_file()
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise ConfigError(f"{key}[{i}]: {pattern!r} matches no file (looked for {full})")
        for m in matches:
            path = Path(m).resolve()
            try:
                name = str(path.relative_to(root.resolve()))
            except ValueError:
                name = str(path)
            found.setdefault(name, (path, name))
    return tuple(found[k] for k in sorted(found))


def column_roles(schema: DatasetSchema) -> tuple[dict[str, str], dict[str, str]]:
    """Which columns the schema reads, what for, and whether they are purely numeric.

    Args:
        schema: A schema.

    Returns:
        ``(uses, kinds)``: ``uses[column]`` names the first schema key that reads it (for error messages);
        ``kinds[column]`` is ``"number"`` when every use is numeric (dense, bucketised, threshold, weight), else
        ``"text"``.
    """
    uses: dict[str, str] = {}
    kinds: dict[str, str] = {}

    def add(column: str, use: str, kind: str) -> None:
        uses.setdefault(column, use)
        kinds[column] = "text" if kinds.get(column, kind) == "text" or kind == "text" else "number"

    if schema.group:
        add(schema.group, "group", "text")
    if schema.time:
        add(schema.time, "time", "text")
    for i, f in enumerate(schema.sparse):
        add(f.column, f"sparse[{i}] ({f.name})", "number" if f.boundaries else "text")
    for i, f in enumerate(schema.dense):
        add(f.column, f"dense[{i}] ({f.name})", "number")
    for i, t in enumerate(schema.tasks):
        add(t.column, f"tasks[{i}] ({t.name})", "number" if t.threshold is not None else "text")
        if t.weight_column:
            add(t.weight_column, f"tasks[{i}].weight_column", "number")
    for i, j in enumerate(schema.joins):
        add(j.key, f"joins[{i}].key", "text")
    return uses, kinds


# ---------------------------------------------------------------------------------------------------- scanning
def scan_file(
    path: Path, name: str, index: int, schema: DatasetSchema, unit_rows: int
) -> tuple[FileInfo, tuple[Unit, ...]]:
    """Reads a file's metadata (Parquet footer, or a CSV line index) and cuts it into units.

    Args:
        path: The file.
        name: Its name relative to the data root.
        index: Its position in the data set's file list (stored in the units).
        schema: The schema (format, delimiter, header, columns).
        unit_rows: The number of lines per CSV unit.

    Returns:
        The file info and its units.

    Raises:
        DataError: For an unreadable file.
    """
    fmt = schema.format or infer_format(path)
    stat = path.stat()
    if fmt == "parquet":
        try:
            meta = _parquet_file(str(path)).metadata
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{path}: not a readable Parquet file: {e}") from e
        names = tuple(meta.schema.to_arrow_schema().names)
        units, row = [], 0
        for rg in range(meta.num_row_groups):
            n = meta.row_group(rg).num_rows
            if n:
                units.append(Unit(index, row, n, rg))
            row += n
        info = FileInfo(str(path), name, fmt, False, "", False, names, row, stat.st_size, stat.st_mtime_ns)
        return info, tuple(units)
    gz = str(path).lower().endswith(".gz")
    delimiter = schema.delimiter or ("\t" if fmt == "tsv" else ",")
    header_line, bounds, num_rows = _TextIndex.get(str(path), gz, schema.header, unit_rows, stat)
    if schema.header:
        if not header_line.strip():
            raise DataError(f"{path}: line 1: empty header line (set header: false and `columns` if there is none)")
        names = _parse_header(header_line, delimiter, path)
    else:
        names = tuple(schema.columns or ())
    info = FileInfo(str(path), name, fmt, gz, delimiter, schema.header, names, num_rows, stat.st_size,
                    stat.st_mtime_ns)
    units = []
    for u, (start, end) in enumerate(itertools.pairwise(bounds)):
        row = u * unit_rows
        if num_rows > row:
            units.append(Unit(index, row, min(unit_rows, num_rows - row), int(start), int(end)))
    return info, tuple(units)


def _parse_header(line: bytes, delimiter: str, path: Path) -> tuple[str, ...]:
    try:
        t = pacsv.read_csv(
            io.BytesIO(line + b"\n"),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types={}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: line 1: cannot parse the header: {e}") from e
    names = tuple(str(t.column(i)[0].as_py()).strip() for i in range(t.num_columns))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: line 1: duplicate column names {dup}")
    return names


class _TextIndex:
    """Per-process cache of text-file line indexes and gzip checkpoints (zlib states cannot be pickled)."""

    _cache: ClassVar[dict[tuple[str, int, int, bool, int], tuple[bytes, np.ndarray, int]]] = {}
    _checkpoints: ClassVar[dict[tuple[str, int, int], list[tuple[int, int, object]]]] = {}

    @classmethod
    def get(cls, path: str, gz: bool, header: bool, unit_rows: int, stat: os.stat_result):
        key = (path, stat.st_size, stat.st_mtime_ns, header, unit_rows)
        if key not in cls._cache:
            cls._cache[key] = cls._scan(path, gz, header, unit_rows, stat)
        return cls._cache[key]

    @classmethod
    def checkpoints(cls, path: str, stat: os.stat_result) -> list[tuple[int, int, object]]:
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in cls._checkpoints:  # e.g. a spawned worker: decompress once to rebuild them
            for _ in _chunks(path, True, key):
                pass
        return cls._checkpoints[key]

    @classmethod
    def _scan(cls, path: str, gz: bool, header: bool, unit_rows: int, stat: os.stat_result):
        """One pass: header line, byte offsets of every ``unit_rows``-th line, and the number of data lines."""
        header_buf = bytearray()
        in_header = header
        data_start = 0
        count = 0  # newlines in the data part
        bounds: list[int] = []
        content_end = 0  # just past the last byte that is not a line break
        nl_after_content = 0
        for pos, chunk in _chunks(path, gz, (path, stat.st_size, stat.st_mtime_ns)):
            arr = np.frombuffer(chunk, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            if in_header:
                if len(nl) == 0:
                    header_buf += chunk
                    continue
                header_buf += chunk[: nl[0]]
                in_header = False
                data_start = pos + int(nl[0]) + 1
                nl = nl[1:]
                if not bounds:
                    bounds.append(data_start)
            elif not bounds:
                bounds.append(data_start)
            first = unit_rows - 1 - count % unit_rows
            bounds.extend((pos + nl[first::unit_rows] + 1).tolist())
            count += len(nl)
            body = chunk[max(0, data_start - pos) :]
            stripped = len(body.rstrip(b"\r\n"))
            if stripped:
                content_end = pos + (len(chunk) - len(body)) + stripped
                nl_after_content = body.count(b"\n", stripped)
            else:
                nl_after_content += body.count(b"\n")
        if not bounds:
            bounds.append(data_start)
        lines = count - nl_after_content + 1 if content_end > data_start else 0
        if lines:
            kept = [b for b in bounds if b < content_end][: (lines + unit_rows - 1) // unit_rows] + [content_end]
        else:
            kept = [data_start, data_start]
        return bytes(header_buf).rstrip(b"\r"), np.asarray(kept, dtype=np.int64), lines


def _chunks(path: str, gz: bool, ckey: tuple[str, int, int]) -> Iterator[tuple[int, bytes]]:
    """Yields ``(offset, bytes)`` of a file's (decompressed) content; for gzip also records zlib checkpoints."""
    with open(path, "rb") as f:
        if not gz:
            pos = 0
            while chunk := f.read(_CHUNK):
                yield pos, chunk
                pos += len(chunk)
            return
        checkpoints: list[tuple[int, int, object]] = [(0, 0, zlib.decompressobj(31))]
        d = zlib.decompressobj(31)
        comp = pos = last = 0
        while buf := f.read(_GZ_READ):
            comp += len(buf)
            out, d = _inflate(d, buf, path)
            if out:
                yield pos, out
                pos += len(out)
            if pos - last >= _GZ_CHECKPOINT:
                checkpoints.append((comp, pos, zlib.decompressobj(31) if d.eof else d.copy()))
                last = pos
        if not d.eof:  # zlib does not raise on a stream that stops early: a cut file would read as fewer rows
            raise DataError(f"{path}: the gzip data ends early (a truncated or incomplete file): its last member "
                            f"stops after {comp:,} compressed bytes ({pos:,} bytes decompressed); re-copy or "
                            "re-download the file")
        _TextIndex._checkpoints[ckey] = checkpoints


def _inflate(d, buf: bytes, path: str):
    """Decompresses ``buf``, starting a new decompressor at each gzip member boundary."""
    if d.eof:
        d = zlib.decompressobj(31)
    try:
        parts = [d.decompress(buf)]
        while d.eof and d.unused_data:
            rest = d.unused_data
            d = zlib.decompressobj(31)
            parts.append(d.decompress(rest))
    except zlib.error as e:
        raise DataError(f"{path}: corrupt gzip data: {e}") from e
    return b"".join(parts), d


def _read_text_range(info: FileInfo, start: int, end: int) -> bytes:
    """The (decompressed) bytes ``[start, end)`` of a text file."""
    if not info.gzip:
        with open(info.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)
    stat = os.stat(info.path)
    cps = _TextIndex.checkpoints(info.path, stat)
    i = max(k for k, cp in enumerate(cps) if cp[1] <= start)
    comp, pos, state = cps[i]
    d = state.copy()  # type: ignore[attr-defined]
    out = bytearray()
    with open(info.path, "rb") as f:
        f.seek(comp)
        while pos < end and (buf := f.read(_GZ_READ)):
            data, d = _inflate(d, buf, info.path)
            lo, hi = max(start - pos, 0), min(end - pos, len(data))
            if hi > lo:
                out += data[lo:hi]
            pos += len(data)
    if pos < end:
        raise DataError(f"{info.path}: the gzip data ends at byte {pos:,} of the {end:,} indexed (the file changed "
                        "or is truncated)")
    return bytes(out)


# ----------------------------------------------------------------------------------------------------- reading
_PARQUET: dict[tuple[int, str, tuple[str, ...]], pq.ParquetFile] = {}


def _is_flat_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)


def _parquet_file(path: str, dictionary_columns: tuple[str, ...] = ()) -> pq.ParquetFile:
    """An open ParquetFile, cached per process (forked workers must not share file offsets)."""
    key = (os.getpid(), path, dictionary_columns)
    if key not in _PARQUET:
        if len(_PARQUET) > 64:
            _PARQUET.clear()
        _PARQUET[key] = pq.ParquetFile(path, read_dictionary=list(dictionary_columns) or None)
    return _PARQUET[key]


def read_unit(
    info: FileInfo,
    unit: Unit,
    columns: Sequence[str],
    kinds: dict[str, str],
    null_values: Sequence[str],
) -> pa.Table:
    """Reads the given columns of one unit.

    Args:
        info: The file.
        unit: The unit.
        columns: The columns to read (all must exist in the file).
        kinds: ``"number"`` or ``"text"`` per column: the type text files are parsed into.
        null_values: Text cells that mean "missing".

    Returns:
        A table with ``unit.num_rows`` rows and ``columns``.

    Raises:
        DataError: Naming file, row/line and column for malformed rows or unparseable numbers.
    """
    if info.format == "parquet":
        arrow_schema = _parquet_file(info.path).schema_arrow
        text = tuple(c for c in columns if kinds.get(c) != "number" and _is_flat_text(arrow_schema.field(c).type))
        # Text columns come back dictionary-encoded, so each distinct value is cleaned and hashed once.
        pf = _parquet_file(info.path, text)
        try:
            return pf.read_row_group(unit.start, columns=list(columns), use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{info.path}: row group {unit.start} (rows {unit.row_start + 1}.."
                            f"{unit.row_start + unit.num_rows}) cannot be read, the file is corrupt: {e}") from e
    data = _read_text_range(info, unit.start, unit.end)
    try:
        table = _parse_csv(info, unit, data, columns, kinds, null_values)
    except _NumberError:
        # Locate the bad cell: parse every column as text, then convert numbers ourselves (parse_numbers names it).
        table = _parse_csv(info, unit, data, columns, dict.fromkeys(columns, "text"), null_values)
        from smes_rec.data.features import parse_numbers

        rows = np.arange(unit.row_start, unit.row_start + len(table))
        ctx = RowContext(info, rows)
        for c in columns:
            if kinds.get(c) == "number":
                parse_numbers(table.column(c), ctx, c, null_values)
        raise DataError(f"{info.path}: rows {unit.row_start + 1}..{unit.row_start + unit.num_rows}: a number "
                        "could not be parsed") from None
    if table.num_rows != unit.num_rows:
        raise DataError(
            f"{info.path}: rows {unit.row_start + 1}..{unit.row_start + unit.num_rows}: parsed {table.num_rows} rows "
            f"from {unit.num_rows} lines. Quoted fields with line breaks are not supported by the indexed CSV reader; "
            "convert the file to Parquet with `python apps/prepare.py convert`."
        )
    return table


_TEXT_DICT = pa.dictionary(pa.int32(), pa.string())


class _NumberError(Exception):
    pass


def _parse_csv(
    info: FileInfo, unit: Unit, data: bytes, columns: Sequence[str], kinds: dict[str, str],
    null_values: Sequence[str],
) -> pa.Table:
    bad: list = []

    def on_invalid(row) -> str:
        bad.append(row)
        return "error"

    # Text columns are dictionary-encoded while parsing, so each distinct id is cleaned and hashed once.
    types = {c: pa.float64() if kinds.get(c) == "number" else _TEXT_DICT for c in columns}
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=list(info.column_names), use_threads=False, block_size=max(len(data) + 1, 1 << 16)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=info.delimiter, ignore_empty_lines=False, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(columns), column_types=types, null_values=sorted({"", *null_values}),
                strings_can_be_null=True, quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        if bad:
            r = bad[0]
            row = unit.row_start + r.number - 1 if r.number is not None else unit.row_start
            raise DataError(
                f"{info.where(row)}: expected {r.expected_columns} fields, got {r.actual_columns}: {r.text[:200]!r}"
            ) from None
        if "conversion error" in str(e):
            raise _NumberError() from e
        raise DataError(f"{info.path}: rows {unit.row_start + 1}..{unit.row_start + unit.num_rows}: {e}") from e


def read_side_table(schema: DatasetSchema, join: Join, index: int, columns: Sequence[str] | None,
                    kinds: dict[str, str]) -> tuple[pa.Table, str]:
    """Reads a whole side table (they are small: one row per user or item).

    Args:
        schema: The schema (for the data root, null values).
        join: The join.
        index: Its position in ``schema.joins`` (for error messages).
        columns: The columns to read (None: all).
        kinds: ``"number"``/``"text"`` per column for text parsing; other columns are parsed as text.

    Returns:
        The table and its resolved path.

    Raises:
        ConfigError: When the path matches no file or several.
        DataError: For unreadable files.
    """
    path = resolve_join(schema, join, index)
    fmt = infer_format(path)
    if fmt == "parquet":
        try:
            return pq.read_table(path, columns=list(columns) if columns is not None else None), path
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: not a readable Parquet file (joins[{index}]): {e}") from e
    delimiter = join.delimiter or ("\t" if fmt == "tsv" else ",")
    names = None
    if columns is None:
        names = _parse_header(_first_line(path), delimiter, Path(path))
    wanted = list(columns) if columns is not None else list(names or ())
    bad: list = []
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda r: bad.append(r) or
                                             "error"),
            convert_options=_csv_convert_options(wanted, kinds, schema.null_values),
        )
    except pa.ArrowInvalid as e:
        if bad:
            raise _field_count_error(path, bad[0]) from None
        raise DataError(f"{path}: {e}") from e
    except OSError as e:  # e.g. "Truncated compressed stream" from a cut .gz file
        raise DataError(f"{path}: cannot be read (a truncated or corrupt file?): {e}") from e
    return table, path


def _csv_convert_options(wanted: Sequence[str], kinds: dict[str, str], null_values: Sequence[str]
                         ) -> pacsv.ConvertOptions:
    """Reads ``wanted`` only: ``number`` columns as float64, every other as text; empty cells and ``null_values``
    are missing."""
    return pacsv.ConvertOptions(
        include_columns=list(wanted),
        column_types={c: pa.float64() if kinds.get(c) == "number" else pa.string() for c in wanted},
        null_values=sorted({"", *null_values}), strings_can_be_null=True,
    )


def _field_count_error(path: str, row: pacsv.InvalidRow) -> DataError:
    """The error for a row with the wrong number of fields (pyarrow's ``number`` is the line in the file)."""
    return DataError(f"{path}: line {row.number}: expected {row.expected_columns} fields, got {row.actual_columns}")


def resolve_join(schema: DatasetSchema, join: Join, index: int) -> str:
    """The one file a join's ``path`` (possibly a glob) names.

    Raises:
        ConfigError: When it matches no file or several.
    """
    full = schema.resolve(join.path)
    matches = sorted(glob.glob(str(full))) if glob.has_magic(str(full)) else [str(full)] * full.is_file()
    if len(matches) != 1:
        what = "no file" if not matches else f"{len(matches)} files"
        raise ConfigError(f"joins[{index}].path: {join.path!r} matches {what} (looked for {full})")
    return str(Path(matches[0]).resolve())


def side_table_columns(path: str, delimiter: str | None) -> tuple[str, ...]:
    """The column names of a side table file."""
    fmt = infer_format(path)
    if fmt == "parquet":
        return tuple(pq.read_schema(path).names)
    return _parse_header(_first_line(path), delimiter or ("\t" if fmt == "tsv" else ","), Path(path))


def _first_line(path: str) -> bytes:
    opener = _gz_open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.readline().rstrip(b"\r\n")
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the header line (a truncated or corrupt file?): {e}") from e


def _gz_open(path: str, mode: str):
    import gzip

    return gzip.open(path, mode)


# ------------------------------------------------------------------------------------------------- streaming
def iter_batches(
    info: FileInfo, columns: Sequence[str] | None, kinds: dict[str, str], null_values: Sequence[str],
    batch_rows: int = 65536,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Streams a whole file with pyarrow's streaming readers (quoted line breaks allowed), for conversions.

    Args:
        info: The file.
        columns: Columns to read (None: all).
        kinds: ``"number"``/``"text"`` per column for text parsing (others: text).
        null_values: Text cells that mean "missing".
        batch_rows: Rows per yielded batch (approximate for text files).

    Yields:
        ``(first data row, record batch)``.
    """
    wanted = list(columns) if columns is not None else list(info.column_names)
    if info.format == "parquet":
        row = 0
        try:
            for batch in _parquet_file(info.path).iter_batches(batch_size=batch_rows, columns=wanted,
                                                               use_threads=False):
                yield row, batch
                row += batch.num_rows
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{info.path}: after data row {row}: cannot be read, the file is corrupt: {e}") from e
        return
    bad: list = []
    row = 0
    try:
        # Opening parses the first block, so it can fail on a malformed row too.
        reader = pacsv.open_csv(
            info.path,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=1 << 24, column_names=list(info.column_names),
                skip_rows=int(info.header),
            ),
            parse_options=pacsv.ParseOptions(delimiter=info.delimiter, newlines_in_values=True,
                                             invalid_row_handler=lambda r: bad.append(r) or "error"),
            convert_options=_csv_convert_options(wanted, kinds, null_values),
        )
        for batch in reader:
            yield row, batch
            row += batch.num_rows
    except pa.ArrowInvalid as e:
        if bad:
            raise _field_count_error(info.path, bad[0]) from None
        raise DataError(f"{info.path}: after data row {row}: {e}") from e
    except OSError as e:  # pyarrow's "Truncated compressed stream" for a cut .gz file, I/O errors
        raise DataError(f"{info.path}: after data row {row}: cannot be read (a truncated or corrupt file?): "
                        f"{e}") from e
