"""Files: find the files of a data set, read their metadata, and cut them into units that can be read independently.

A *unit* is the smallest piece of a file read at once: a row group of a Parquet file, or a run of up to
``unit_rows`` lines of a CSV/TSV file. Units let every rank and DataLoader worker read only its own part of the data.

CSV files are made randomly accessible by a line index built in one streaming pass (numpy over 8 MiB chunks, about
a GB/s): the byte offset of every ``unit_rows``-th line. Gzipped CSV is indexed the same way while it is
decompressed, keeping a copy of the zlib state every 32 MiB of output, so reading a unit decompresses at most that
much extra instead of the whole prefix. The index assumes one row per line: quoted fields containing line breaks
are detected when a unit is parsed (``cells.read_unit``).

What is worth keeping between calls (line indexes, zlib states, open Parquet files) lives in one bounded
``FileCache`` that its owner (a ``DataSource``, a serving ``RowReader``) passes in.
"""

from __future__ import annotations

import glob
import gzip
import io
import itertools
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from smes_rec.data.schema import DataError, DatasetSchema, Format, Join
from smes_rec.utils.config import ConfigError

__all__ = [
    "FileCache",
    "FileInfo",
    "RowContext",
    "Unit",
    "default_delimiter",
    "infer_format",
    "parse_header",
    "read_text_range",
    "resolve_files",
    "resolve_join",
    "scan_file",
    "side_table_columns",
]

_CHUNK = 1 << 23  # bytes per read while indexing text files
_GZ_CHECKPOINT = 1 << 25  # decompressed bytes between saved zlib states
_GZ_READ = 1 << 20
_T = TypeVar("_T")
Checkpoint = tuple[int, int, Any]  # (compressed offset, decompressed offset, zlib decompressor state)


def infer_format(path: str | Path) -> Format:
    """Returns the file format implied by a file name (``.csv``, ``.tsv``, ``.parquet``/``.pq``, optionally ``.gz``).

    Args:
        path: A file name.

    Returns:
        ``"csv"``, ``"tsv"`` or ``"parquet"``.

    Raises:
        DataError: When the suffix is not one of those.
    """
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".txt", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt  # type: ignore[return-value]
    raise DataError(f"{path}: cannot infer the file format from the name; set `format` in the schema")


def default_delimiter(fmt: str, delimiter: str | None) -> str:
    """The field delimiter of a text file: the given one, else tab for ``tsv`` and comma otherwise."""
    return delimiter or ("\t" if fmt == "tsv" else ",")


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


# ------------------------------------------------------------------------------------------------------- cache
class FileCache:
    """A bounded least-recently-used cache of what reading files builds once: text line indexes, gzip zlib states
    and open Parquet files.

    It is owned by whoever reads the files and passed in; nothing is kept in module globals. Entries are keyed by
    path, size and modification time, so a changed file is never served stale. Pickling (spawned DataLoader
    workers) drops the entries (zlib states and open files cannot be pickled); a forked worker inherits them, and
    Parquet handles are keyed by process so forked workers never share a file offset.

    Args:
        max_entries: The bound: the least recently used entry is dropped beyond it. An evicted gzip index is rebuilt
            by decompressing the file once more.
    """

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        return {"max_entries": self.max_entries, "_entries": OrderedDict()}

    def get(self, key: tuple[Any, ...], build: Callable[[], _T]) -> _T:
        """The entry ``key``, built with ``build()`` (and stored) when absent."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = build()
        self.put(key, value)
        return value

    def put(self, key: tuple[Any, ...], value: object) -> None:
        """Stores an entry, dropping the least recently used ones beyond the bound."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def parquet_file(self, path: str, dictionary_columns: Sequence[str] = ()) -> pq.ParquetFile:
        """An open ``ParquetFile`` (text ``dictionary_columns`` read dictionary-encoded), one per process."""
        cols = tuple(dictionary_columns)
        if not cols:
            return self.get(("parquet", os.getpid(), path, cols), lambda: pq.ParquetFile(path))
        # The footer is parsed once per file: a dictionary-reading handle reuses the plain handle's metadata.
        return self.get(("parquet", os.getpid(), path, cols),
                        lambda: pq.ParquetFile(path, metadata=self.parquet_file(path).metadata,
                                               read_dictionary=list(cols)))

    def gzip_checkpoints(self, path: str) -> list[Checkpoint]:
        """The saved zlib states of a gzip file (rebuilt by one decompression pass when absent)."""
        stat = os.stat(path)
        key = ("gzip", path, stat.st_size, stat.st_mtime_ns)
        if key not in self._entries:  # e.g. a spawned worker or an evicted entry
            for _ in _chunks(path, True, self, key):
                pass
        return self.get(key, list)


# ------------------------------------------------------------------------------------------------- file discovery
def _glob(full: Path) -> list[str]:
    """The files a path or glob names."""
    return sorted(glob.glob(str(full))) if glob.has_magic(str(full)) else [str(full)] * full.is_file()


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
        matches = [m for m in _glob(full) if Path(m).is_file()]
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


def resolve_join(schema: DatasetSchema, join: Join, index: int) -> str:
    """The one file a join's ``path`` (possibly a glob) names.

    Raises:
        ConfigError: When it matches no file or several.
    """
    full = schema.resolve(join.path)
    matches = _glob(full)
    if len(matches) != 1:
        what = "no file" if not matches else f"{len(matches)} files"
        raise ConfigError(f"joins[{index}].path: {join.path!r} matches {what} (looked for {full})")
    return str(Path(matches[0]).resolve())


# ---------------------------------------------------------------------------------------------------- metadata
def parse_header(line: bytes, delimiter: str, path: str | Path) -> tuple[str, ...]:
    """The column names of a text file's header line (parsed as CSV, so quoted names work).

    Raises:
        DataError: For an unparseable header or duplicate names.
    """
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


def side_table_columns(path: str, delimiter: str | None) -> tuple[str, ...]:
    """The column names of a side table file."""
    fmt = infer_format(path)
    if fmt == "parquet":
        return tuple(pq.read_schema(path).names)
    return parse_header(_first_line(path), default_delimiter(fmt, delimiter), path)


def _first_line(path: str) -> bytes:
    try:
        if path.lower().endswith(".gz"):
            with gzip.open(path, "rb") as g:
                return g.readline().rstrip(b"\r\n")
        with open(path, "rb") as f:
            return f.readline().rstrip(b"\r\n")
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the header line (a truncated or corrupt file?): {e}") from e


def scan_file(
    path: Path, name: str, index: int, schema: DatasetSchema, unit_rows: int, cache: FileCache | None = None
) -> tuple[FileInfo, tuple[Unit, ...]]:
    """Reads a file's metadata (Parquet footer, or a CSV line index) and cuts it into units.

    Args:
        path: The file.
        name: Its name relative to the data root.
        index: Its position in the data set's file list (stored in the units).
        schema: The schema (format, delimiter, header, columns).
        unit_rows: The number of lines per CSV unit.
        cache: Keeps the line index, gzip states and open Parquet file for the reads that follow (None: a
            throw-away cache).

    Returns:
        The file info and its units.

    Raises:
        DataError: For an unreadable file.
    """
    cache = cache if cache is not None else FileCache()
    fmt = schema.format or infer_format(path)
    stat = path.stat()
    if fmt == "parquet":
        try:
            meta = cache.parquet_file(str(path)).metadata
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
    delimiter = default_delimiter(fmt, schema.delimiter)
    key = ("index", str(path), stat.st_size, stat.st_mtime_ns, schema.header, unit_rows)
    header_line, bounds, num_rows = cache.get(
        key, lambda: _index_text(str(path), gz, schema.header, unit_rows, cache, stat))
    if schema.header:
        if not header_line.strip():
            raise DataError(f"{path}: line 1: empty header line (set header: false and `columns` if there is none)")
        names = parse_header(header_line, delimiter, path)
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


# -------------------------------------------------------------------------------------------- the text index
def _index_text(path: str, gz: bool, header: bool, unit_rows: int, cache: FileCache, stat: os.stat_result
                ) -> tuple[bytes, np.ndarray, int]:
    """One pass: header line, byte offsets of every ``unit_rows``-th line, and the number of data lines."""
    header_buf = bytearray()
    in_header = header
    data_start = 0
    count = 0  # newlines in the data part
    bounds: list[int] = []
    content_end = 0  # just past the last byte that is not a line break
    nl_after_content = 0
    for pos, chunk in _chunks(path, gz, cache, ("gzip", path, stat.st_size, stat.st_mtime_ns)):
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


def _chunks(path: str, gz: bool, cache: FileCache, ckey: tuple[Any, ...]) -> Iterator[tuple[int, bytes]]:
    """Yields ``(offset, bytes)`` of a file's (decompressed) content; for gzip also stores zlib checkpoints."""
    with open(path, "rb") as f:
        if not gz:
            pos = 0
            while chunk := f.read(_CHUNK):
                yield pos, chunk
                pos += len(chunk)
            return
        checkpoints: list[Checkpoint] = [(0, 0, zlib.decompressobj(31))]
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
        cache.put(ckey, checkpoints)


def _inflate(d: Any, buf: bytes, path: str) -> tuple[bytes, Any]:
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


def read_text_range(info: FileInfo, start: int, end: int, cache: FileCache) -> bytes:
    """The (decompressed) bytes ``[start, end)`` of a text file.

    Raises:
        DataError: When a gzip file holds fewer bytes than indexed, or is corrupt.
    """
    if not info.gzip:
        with open(info.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)
    cps = cache.gzip_checkpoints(info.path)
    i = max(k for k, cp in enumerate(cps) if cp[1] <= start)
    comp, pos, state = cps[i]
    d = state.copy()
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
