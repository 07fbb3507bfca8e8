"""Stable hashing of categorical ids into embedding buckets.

The same id must land in the same bucket in every process, run and machine, so Python's salted ``hash()`` is out.
The hash is defined on a canonical form of the id, so that a CSV text cell, a Parquet integer and a Parquet float
holding the same id agree:

- an integer id ``v`` (an integer cell, an integral float such as ``7.0``, or text such as ``"7"``, ``" +7 "``,
  ``"007"`` or ``"7.0"``) hashes as ``fmix64(uint64(v))``, where ``fmix64`` is MurmurHash3's 64-bit finaliser
  (a bijection with full avalanche) and ``uint64(v)`` the two's-complement bits;
- any other id hashes as ``fmix64(fnv1a64(utf8 bytes))`` of its text (non-integral floats use Arrow's shortest
  round-trip text, e.g. ``"1.5"``);
- the bucket is ``(hash >> 32) * num_embeddings >> 32``: the top 32 bits scaled into ``[0, num_embeddings)``
  (Lemire's multiply-shift reduction, uniform like a modulo and cheaper).

Everything is vectorised with numpy ``uint64`` arithmetic (which wraps, as the hash needs) over Arrow buffers; text
columns are dictionary-encoded first so each distinct string is hashed once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smes_rec.data.cells import INT_TEXT, is_text

__all__ = ["bucketize_ids", "canonical_ids", "fmix64", "fnv1a64", "group_ids", "hash_ids", "hash_text"]

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def fmix64(x_N: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise on ``uint64``.

    Args:
        x_N: ``[N]`` uint64 values.

    Returns:
        ``[N]`` uint64 hashes (a new array).
    """
    x = x_N.astype(np.uint64, copy=True)
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def fnv1a64(data_U8: np.ndarray, offsets_N1: np.ndarray) -> np.ndarray:
    """FNV-1a 64-bit hashes of byte strings stored back to back (Arrow's string layout).

    Args:
        data_U8: The concatenated bytes, uint8.
        offsets_N1: ``[N + 1]`` offsets of each string into ``data_U8``.

    Returns:
        ``[N]`` uint64 hashes.
    """
    offsets = offsets_N1.astype(np.int64)
    starts_N, lengths_N = offsets[:-1], np.diff(offsets)
    h_N = np.full(len(starts_N), _FNV_OFFSET, dtype=np.uint64)
    active = np.flatnonzero(lengths_N > 0)
    j = 0
    # One vector step per byte position; strings drop out as they end, so the cost is the total byte count.
    while active.size:
        h_N[active] = (h_N[active] ^ data_U8[starts_N[active] + j].astype(np.uint64)) * _FNV_PRIME
        j += 1
        active = active[lengths_N[active] > j]
    return h_N


def _fnv_text(values: pa.Array) -> np.ndarray:
    """Raw FNV-1a 64 hashes of a string/binary array's bytes; nulls hash as empty text."""
    values = values.cast(pa.large_binary()) if not pa.types.is_large_binary(values.type) else values
    values = pc.fill_null(values, b"") if values.null_count else values
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return fnv1a64(data, offsets)


def hash_text(values: pa.Array) -> np.ndarray:
    """Hashes a string array as text (no int-like canonicalisation): ``fmix64(fnv1a64(utf8))``."""
    return fmix64(_fnv_text(values))


class _Canonical:
    """Canonical ids: ``is_int`` rows hold the integer's 64 bits in ``key``, the others their raw text hash."""

    __slots__ = ("is_int", "key", "valid")

    def __init__(self, key: np.ndarray, is_int: np.ndarray, valid: np.ndarray) -> None:
        self.key, self.is_int, self.valid = key, is_int, valid

    def take(self, idx: np.ndarray) -> _Canonical:
        return _Canonical(self.key[idx], self.is_int[idx], self.valid[idx])


def _canonical_text(values: pa.Array) -> _Canonical:
    n = len(values)
    valid = ~np.asarray(pc.is_null(values)) & (np.asarray(pc.fill_null(pc.binary_length(values), 0)) > 0)
    key = np.zeros(n, dtype=np.uint64)
    is_int = np.asarray(pc.fill_null(pc.match_substring_regex(values, INT_TEXT), False)).copy()
    if is_int.any():
        idx = np.flatnonzero(is_int)
        canon = pc.replace_substring_regex(values.take(pa.array(idx)), INT_TEXT, r"\1\2")
        try:
            key[idx] = pc.cast(canon, pa.int64()).to_numpy().view(np.uint64)
        except pa.ArrowInvalid:  # beyond int64: keep the uint64 bits where they fit, else treat as text
            for i, s in zip(idx, canon.to_pylist(), strict=False):
                v = int(s)
                if -(2**63) <= v < 2**64:
                    key[i] = np.uint64(v & 0xFFFFFFFFFFFFFFFF)
                else:
                    is_int[i] = False
    text = valid & ~is_int
    if text.any():
        idx = np.flatnonzero(text)
        key[idx] = _fnv_text(values.take(pa.array(idx)))
    return _Canonical(key, is_int, valid)


def _canonical(values: pa.Array | pa.ChunkedArray, strip: bool) -> _Canonical:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    n = len(values)
    if pa.types.is_dictionary(t):
        dictionary = values.dictionary
        if is_text(dictionary.type, binary=True):
            if strip and not pa.types.is_binary(dictionary.type) and not pa.types.is_large_binary(dictionary.type):
                dictionary = pc.utf8_trim_whitespace(dictionary)
            canon = _canonical_text(dictionary)
        else:
            canon = _canonical(dictionary, strip)
        indices = values.indices
        idx = np.asarray(pc.fill_null(indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        if len(canon.key) == 0:
            return _Canonical(np.zeros(n, np.uint64), np.zeros(n, bool), np.zeros(n, bool))
        out = canon.take(idx)
        if indices.null_count:
            out.valid &= ~np.asarray(pc.is_null(indices))
        return out
    valid = ~np.asarray(pc.is_null(values)) if values.null_count else np.ones(n, dtype=bool)
    if pa.types.is_boolean(t):
        t, values = pa.int8(), values.cast(pa.int8())
    if pa.types.is_integer(t):
        raw = (pc.fill_null(values, 0) if values.null_count else values).to_numpy(zero_copy_only=False)
        key = raw.view(np.uint64) if raw.dtype == np.uint64 else raw.astype(np.int64).view(np.uint64)
        return _Canonical(key, np.ones(n, dtype=bool), valid)
    if pa.types.is_floating(t):
        x = pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        valid &= ~np.isnan(x)
        is_int = valid & (np.floor(x) == x) & (np.abs(x) < 2.0**63)
        key = np.where(is_int, x, 0).astype(np.int64).view(np.uint64)
        other = valid & ~is_int
        if other.any():  # non-integral floats are ids by their shortest text
            idx = np.flatnonzero(other)
            key[idx] = _fnv_text(pc.cast(values.take(pa.array(idx)), pa.string()))
        return _Canonical(key, is_int, valid)
    if is_text(t, binary=True):
        # Canonicalise each distinct string once: ids repeat a lot within a chunk.
        return _canonical(pc.dictionary_encode(values), strip)
    raise TypeError(f"cannot use a column of type {t} as categorical ids")


def canonical_ids(values: pa.Array | pa.ChunkedArray, strip: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The canonical form of ids, before hashing (see the module docstring).

    Args:
        values: ``[N]`` ids.
        strip: Trim whitespace around text ids.

    Returns:
        ``(key_N, is_int_N, valid_N)``: for integer ids ``key`` holds the integer's 64 bits (uint64), for text ids
        the raw FNV-1a hash of the text; ``valid`` is False for missing ids.
    """
    c = _canonical(values, strip)
    return c.key, c.is_int, c.valid


def hash_ids(values: pa.Array | pa.ChunkedArray, strip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit hashes of categorical ids (see the module docstring for the canonical forms).

    Args:
        values: ``[N]`` ids of any integer, float, boolean, text or dictionary type.
        strip: Trim whitespace around text ids (int-like text is always trimmed).

    Returns:
        ``(hashes_N, valid_N)``: uint64 hashes and a boolean mask that is False for missing ids (null, NaN or
        empty text), whose hash is meaningless.

    Raises:
        TypeError: For a type that cannot hold ids (e.g. nested or temporal types).
    """
    c = _canonical(values, strip)
    return fmix64(c.key), c.valid


def bucketize_ids(hashes_N: np.ndarray, num_embeddings: int) -> np.ndarray:
    """Maps 64-bit hashes to buckets ``[0, num_embeddings)`` as int64.

    The bucket is ``(hash >> 32) * num_embeddings >> 32`` (Lemire's multiply-shift range reduction of the top 32
    bits): uniform like ``hash mod n`` but four times faster than a 64-bit modulo. Needs ``num_embeddings < 2**32``.
    """
    if not 0 < num_embeddings < 2**32:
        raise ValueError(f"num_embeddings must be in [1, 2**32), got {num_embeddings}")
    return (((hashes_N >> _S32) * np.uint64(num_embeddings)) >> _S32).astype(np.int64)


def group_ids(values: pa.Array | pa.ChunkedArray, strip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Group (user) ids as int64: integer ids (also as text or integral floats) keep their value; other ids are
    hashed into ``[0, 2**63)``.

    Args:
        values: ``[N]`` group ids.
        strip: Trim whitespace around text ids.

    Returns:
        ``(ids_N, valid_N)``: int64 ids and the mask of non-missing ids.
    """
    c = _canonical(values, strip)
    text_ids = fmix64(c.key) & np.uint64(0x7FFFFFFFFFFFFFFF)
    return np.where(c.is_int, c.key, text_ids).view(np.int64), c.valid
