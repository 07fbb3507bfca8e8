"""Exact categorical ids: vocabularies fitted on the train split (``ids: vocab``).

A value is looked up by its canonical form, the same one hashing uses (``hashing.py``): an integer id (an integer
cell, an integral float, or text such as ``"007"``, ``" +7 "`` or ``"7.0"``) is that integer (its int64 value), any
other id is its text (non-integral floats as Arrow's shortest round-trip text, e.g. ``"1.5"``). Text matches
exactly (not by hash).

A vocabulary lists its values in id order: value ``values[i]`` has id ``i + 1``, and id 0 is the out-of-vocabulary
id of every value not in it. Fitting counts every non-missing value of the train split (each id of a multi-valued
cell once), drops values seen fewer than ``min_count`` times, orders the rest by count (descending), then integers
before text, integers ascending and text by code point (= UTF-8 byte order), and keeps the first ``max_size``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smes_rec.data.cells import as_array
from smes_rec.data.hashing import canonical_ids

__all__ = ["OOV_ID", "VocabCounter", "Vocabulary"]

OOV_ID = 0


def _split(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """Canonical forms of a non-dictionary array.

    Returns:
        ``(valid_N, int_rows, ints, text_rows, texts)``: the mask of non-missing ids, the rows holding integer ids
        and their int64 values, the rows holding text ids and their text (a string array).
    """
    key, is_int, valid = canonical_ids(values)
    int_rows = np.flatnonzero(valid & is_int)
    text_rows = np.flatnonzero(valid & ~is_int)
    texts = values.take(pa.array(text_rows, pa.int64()))
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = pc.cast(texts, pa.string())
    return valid, int_rows, key[int_rows].view(np.int64), text_rows, texts


class VocabCounter:
    """Counts canonical values chunk by chunk (the fitting pass), then builds the vocabulary."""

    def __init__(self) -> None:
        self._ints = np.zeros(0, dtype=np.int64)
        self._int_counts = np.zeros(0, dtype=np.int64)
        self._texts: Counter[str] = Counter()

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Counts the non-missing values of a chunk (text already cleaned of ``null_values``/whitespace)."""
        values = as_array(values)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        _, _, ints, _, texts = _split(values)
        if len(ints):
            u, inv = np.unique(np.concatenate([self._ints, ints]), return_inverse=True)
            weights = np.concatenate([self._int_counts, np.ones(len(ints), dtype=np.int64)])
            self._ints, self._int_counts = u, np.bincount(inv, weights=weights, minlength=len(u)).astype(np.int64)
        if len(texts):
            vc = pc.value_counts(texts)
            self._texts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)))

    def vocabulary(self, min_count: int = 1, max_size: int | None = None) -> tuple[int | str, ...]:
        """The values in id order (see the module docstring for the order)."""
        items: list[tuple[int, int, int | str]] = [
            (-int(c), 0, int(v)) for v, c in zip(self._ints, self._int_counts, strict=True) if c >= min_count
        ]
        items.extend((-c, 1, t) for t, c in self._texts.items() if c >= min_count)
        items.sort()
        return tuple(v for _, _, v in items[:max_size])


class Vocabulary:
    """Looks values up in a fitted vocabulary.

    Args:
        values: The vocabulary in id order (``values[i]`` has id ``i + 1``): ints and strings.
    """

    def __init__(self, values: Sequence[int | str]) -> None:
        ints = [(v, i + 1) for i, v in enumerate(values) if isinstance(v, int)]
        texts = [(v, i + 1) for i, v in enumerate(values) if isinstance(v, str)]
        ints.sort()
        self._int_keys = np.array([v for v, _ in ints], dtype=np.int64)
        self._int_ids = np.array([i for _, i in ints], dtype=np.int64)
        self._texts = pa.array([v for v, _ in texts], pa.string())
        self._text_ids = np.array([i for _, i in texts], dtype=np.int64)
        self.size = len(values) + 1

    def lookup(self, values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of values (text already cleaned of ``null_values``/whitespace).

        Args:
            values: ``[N]`` ids of any type ``hashing.canonical_ids`` accepts.

        Returns:
            ``(ids_N, valid_N)``: int64 ids in ``[0, size)`` (``OOV_ID`` for unseen values) and the mask of
            non-missing values (a missing value has no id).
        """
        values = as_array(values)
        if pa.types.is_dictionary(values.type):  # look each distinct value up once
            ids_D, ok_D = self.lookup(values.dictionary)
            idx = np.asarray(pc.fill_null(values.indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            if len(ids_D) == 0:
                return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
            ok = ok_D[idx]
            if values.indices.null_count:
                ok = ok & ~np.asarray(pc.is_null(values.indices))
            return ids_D[idx], ok
        valid, int_rows, ints, text_rows, texts = _split(values)
        ids = np.full(len(values), OOV_ID, dtype=np.int64)
        if len(ints) and len(self._int_keys):
            pos = np.minimum(np.searchsorted(self._int_keys, ints), len(self._int_keys) - 1)
            ids[int_rows] = np.where(self._int_keys[pos] == ints, self._int_ids[pos], OOV_ID)
        if len(texts) and len(self._texts):
            pos = pc.index_in(texts, value_set=self._texts)
            p = np.asarray(pc.fill_null(pos, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
            ids[text_rows] = np.where(p >= 0, self._text_ids[np.maximum(p, 0)], OOV_ID)
        return ids, valid
