"""Cells: parse the rows of a unit (or a whole side table) into an Arrow table, and cells into numbers or clean text.

Cells are parsed by ``pyarrow.csv`` with explicit column types (``float64`` for columns that are only used as
numbers, dictionary-encoded text otherwise), so the type of a column never depends on which rows a unit holds, and
each distinct id of a unit is cleaned and hashed once. Parquet text columns are read dictionary-encoded too. The
indexed CSV reader assumes one row per line: quoted fields containing line breaks are detected (the parsed row
count differs) and reported with a pointer to ``apps/prepare.py convert``, which streams such files with pyarrow's
CSV reader (``iter_batches``) into Parquet.

Every error names the file, the row (and line for text files) and the column.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from smes_rec.data.files import (
    FileCache,
    FileInfo,
    RowContext,
    Unit,
    default_delimiter,
    infer_format,
    read_text_range,
    side_table_columns,
)
from smes_rec.data.schema import DataError, Join

__all__ = [
    "INT64_TEXT",
    "INT_TEXT",
    "NUMBER_TEXT",
    "TEXT_DICT",
    "as_array",
    "clean_text",
    "is_text",
    "iter_batches",
    "parse_numbers",
    "read_side_table",
    "read_unit",
    "try_numbers",
]

# What text cells count as numbers, in one place (each pattern matches a whole cell):
# a number ``float64`` parsing accepts (no surrounding whitespace: cells are trimmed first),
NUMBER_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|infinity|nan)$"
# an integer id, possibly signed, zero-padded, space-padded or with a zero fraction ("7.0"); groups: sign, digits,
INT_TEXT = r"^\s*\+?(-?)([0-9]{1,20})(?:\.0*)?\s*$"
# an integer that ``pyarrow`` casts to int64 exactly once trimmed (storing a text column as int64 keeps its ids).
INT64_TEXT = r"^\s*-?[0-9]{1,18}\s*$"
# Text columns are parsed dictionary-encoded, so each distinct id is cleaned and hashed once.
TEXT_DICT = pa.dictionary(pa.int32(), pa.string())


def as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (chunks combined, a single chunk taken as it is)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def is_text(t: pa.DataType, binary: bool = False) -> bool:
    """Whether ``t`` is a string type (with ``binary``: or a binary one)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return True
    return binary and (pa.types.is_binary(t) or pa.types.is_large_binary(t))


def clean_text(values: pa.Array, strip: bool, null_values: Sequence[str]) -> pa.Array:
    """Trims (optionally) and turns empty text and ``null_values`` into nulls."""
    if strip:
        values = pc.utf8_trim_whitespace(values)
    missing = pc.is_in(values, value_set=pa.array(sorted({"", *null_values}), type=values.type))
    return pc.if_else(missing, pa.scalar(None, values.type), values)


def parse_numbers(values: pa.Array | pa.ChunkedArray, ctx: RowContext, column: str,
                  null_values: Sequence[str] = ("",)) -> np.ndarray:
    """Converts a column to float64, with NaN for missing cells (whitespace around numbers is ignored).

    Args:
        values: ``[N]`` cells of a numeric, boolean, text or dictionary type.
        ctx: Where the rows come from (for errors).
        column: The column name (for errors).
        null_values: Text cells that mean "missing" (empty text always does).

    Returns:
        ``[N]`` float64.

    Raises:
        DataError: For a cell that is not a number, naming file, row and column.
    """
    values = as_array(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    t = values.type
    if pa.types.is_null(t):
        return np.full(len(values), np.nan)
    if pa.types.is_boolean(t):
        values, t = values.cast(pa.int8()), pa.int8()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    if is_text(t):
        text = clean_text(values, True, null_values)
        try:
            return pc.fill_null(text.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            ok = pc.fill_null(pc.match_substring_regex(text, NUMBER_TEXT, ignore_case=True), True)
            i = int(np.flatnonzero(~np.asarray(ok))[0])
            raise DataError(f"{ctx.where(i, column)}: {values[i].as_py()!r} is not a number") from None
    raise DataError(f"{ctx.file.path}: column {column!r} has type {t}, which cannot be read as numbers")


def try_numbers(text: pa.Array) -> np.ndarray:
    """float64 of text cells that are numbers, NaN elsewhere (no errors)."""
    ok = pc.fill_null(pc.match_substring_regex(text, NUMBER_TEXT, ignore_case=True), False)
    out = np.full(len(text), np.nan)
    idx = np.flatnonzero(np.asarray(ok))
    if len(idx):
        out[idx] = text.take(pa.array(idx)).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out


# ------------------------------------------------------------------------------------------------ reading units
def read_unit(
    info: FileInfo,
    unit: Unit,
    columns: Sequence[str],
    kinds: dict[str, str],
    null_values: Sequence[str],
    cache: FileCache | None = None,
) -> pa.Table:
    """Reads the given columns of one unit.

    Args:
        info: The file.
        unit: The unit.
        columns: The columns to read (all must exist in the file).
        kinds: ``"number"`` or ``"text"`` per column: the type text files are parsed into.
        null_values: Text cells that mean "missing".
        cache: The cache filled when the file was scanned (open Parquet files, gzip states); None: a throw-away one.

    Returns:
        A table with ``unit.num_rows`` rows and ``columns``.

    Raises:
        DataError: Naming file, row/line and column for malformed rows or unparseable numbers.
    """
    cache = cache if cache is not None else FileCache()
    if info.format == "parquet":
        arrow_schema = cache.parquet_file(info.path).schema_arrow
        text = tuple(c for c in columns
                     if kinds.get(c) != "number" and is_text(arrow_schema.field(c).type, binary=True))
        # Text columns come back dictionary-encoded, so each distinct value is cleaned and hashed once.
        pf = cache.parquet_file(info.path, text)
        try:
            return pf.read_row_group(unit.start, columns=list(columns), use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{info.path}: row group {unit.start} (rows {unit.row_start + 1}.."
                            f"{unit.row_start + unit.num_rows}) cannot be read, the file is corrupt: {e}") from e
    data = read_text_range(info, unit.start, unit.end, cache)
    try:
        table = _parse_csv(info, unit, data, columns, kinds, null_values)
    except _NumberError:
        # Locate the bad cell: parse every column as text, then convert numbers ourselves (parse_numbers names it).
        table = _parse_csv(info, unit, data, columns, dict.fromkeys(columns, "text"), null_values)
        ctx = RowContext(info, np.arange(unit.row_start, unit.row_start + len(table)))
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


class _NumberError(Exception):
    pass


def _parse_csv(
    info: FileInfo, unit: Unit, data: bytes, columns: Sequence[str], kinds: dict[str, str],
    null_values: Sequence[str],
) -> pa.Table:
    bad: list[pacsv.InvalidRow] = []
    types = {c: pa.float64() if kinds.get(c) == "number" else TEXT_DICT for c in columns}
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=list(info.column_names), use_threads=False, block_size=max(len(data) + 1, 1 << 16)
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=info.delimiter, ignore_empty_lines=False, invalid_row_handler=_collect(bad)
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


def _collect(bad: list[pacsv.InvalidRow]) -> Callable[[pacsv.InvalidRow], str]:
    """An ``invalid_row_handler`` that records the row (for an error naming its line) and fails the read."""

    def handler(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    return handler


def _convert_options(wanted: Sequence[str], kinds: dict[str, str], null_values: Sequence[str]
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


# ------------------------------------------------------------------------------------------- whole-file reads
def read_side_table(path: str, join: Join, index: int, columns: Sequence[str] | None, kinds: dict[str, str],
                    null_values: Sequence[str]) -> pa.Table:
    """Reads a whole side table (they are small: one row per user or item).

    Args:
        path: The side table file (``files.resolve_join``).
        join: The join (for the delimiter).
        index: Its position in ``schema.joins`` (for error messages).
        columns: The columns to read (None: all).
        kinds: ``"number"``/``"text"`` per column for text parsing; other columns are parsed as text.
        null_values: Text cells that mean "missing".

    Returns:
        The table.

    Raises:
        DataError: For unreadable files.
    """
    fmt = infer_format(path)
    if fmt == "parquet":
        try:
            return pq.read_table(path, columns=list(columns) if columns is not None else None)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: not a readable Parquet file (joins[{index}]): {e}") from e
    delimiter = default_delimiter(fmt, join.delimiter)
    wanted = list(columns) if columns is not None else list(side_table_columns(path, join.delimiter))
    bad: list[pacsv.InvalidRow] = []
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=_collect(bad)),
            convert_options=_convert_options(wanted, kinds, null_values),
        )
    except pa.ArrowInvalid as e:
        if bad:
            raise _field_count_error(path, bad[0]) from None
        raise DataError(f"{path}: {e}") from e
    except OSError as e:  # e.g. "Truncated compressed stream" from a cut .gz file
        raise DataError(f"{path}: cannot be read (a truncated or corrupt file?): {e}") from e
    return table


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
    row = 0
    if info.format == "parquet":
        try:
            for batch in pq.ParquetFile(info.path).iter_batches(batch_size=batch_rows, columns=wanted,
                                                                use_threads=False):
                yield row, batch
                row += batch.num_rows
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{info.path}: after data row {row}: cannot be read, the file is corrupt: {e}") from e
        return
    bad: list[pacsv.InvalidRow] = []
    try:
        # Opening parses the first block, so it can fail on a malformed row too.
        reader = pacsv.open_csv(
            info.path,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=1 << 24, column_names=list(info.column_names),
                skip_rows=int(info.header),
            ),
            parse_options=pacsv.ParseOptions(delimiter=info.delimiter, newlines_in_values=True,
                                             invalid_row_handler=_collect(bad)),
            convert_options=_convert_options(wanted, kinds, null_values),
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

