"""Stable hashing: known ids land in known buckets, in every process, whatever type holds the id."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from smes_rec.data import hashing
from smes_rec.data.hashing import bucketize_ids, canonical_ids, fmix64, group_ids, hash_ids, hash_text

_M = (1 << 64) - 1


def _fmix_ref(x: int) -> int:
    """MurmurHash3 fmix64, written out on Python ints (the reference the vectorised code must match)."""
    x &= _M
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M
    return x ^ (x >> 33)


def _fnv_ref(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _M
    return h


def test_known_ids_map_to_known_buckets() -> None:
    # Frozen values: changing the hash would silently remap every trained embedding table.
    h, ok = hash_ids(pa.array([0, 1, 7, 12345, -1, 2**63 - 1]))
    assert ok.all()
    assert h.tolist() == [0, 12994781566227106604, 8360697188923789789, 1716623506685013753, 7256831767414464289,
                          12373989555017149930]
    assert bucketize_ids(h, 1000).tolist() == [0, 704, 453, 93, 393, 670]
    h_text, _ = hash_ids(pa.array(["abc", "full_active", "é"]))
    assert h_text.tolist() == [3741276987793851837, 8200753060768045381, 11337192735045482043]
    assert bucketize_ids(h_text, 1000).tolist() == [202, 444, 614]


def test_vectorised_hash_matches_the_reference() -> None:
    rng = np.random.default_rng(0)
    ints = rng.integers(-(2**63), 2**63 - 1, 200, dtype=np.int64)
    assert fmix64(ints.view(np.uint64)).tolist() == [_fmix_ref(int(v)) for v in ints]
    words = ["", "a", "user_17", "日本", "x" * 300, "with space"]
    h = hash_text(pa.array(words))
    assert h.tolist() == [_fmix_ref(_fnv_ref(w.encode())) for w in words]
    bucket = bucketize_ids(h, 977)
    assert bucket.tolist() == [((int(v) >> 32) * 977) >> 32 for v in h]


def test_the_same_id_in_any_type_hashes_the_same() -> None:
    forms = [
        pa.array([7], pa.int64()), pa.array([7], pa.int8()), pa.array([7], pa.uint32()), pa.array([7.0]),
        pa.array(["7"]), pa.array([" 7 "]), pa.array(["+7"]), pa.array(["007"]), pa.array(["7.00"]),
        pa.array(["7"]).dictionary_encode(), pa.array([7], pa.int64()).dictionary_encode(),
    ]
    hashes = {int(hash_ids(f)[0][0]) for f in forms}
    assert hashes == {_fmix_ref(7)}
    # Text that is not an integer is hashed as text, and strip only trims text ids.
    assert hash_ids(pa.array(["7a"]))[0][0] == _fmix_ref(_fnv_ref(b"7a"))
    assert hash_ids(pa.array([1.5]))[0][0] == _fmix_ref(_fnv_ref(b"1.5"))
    assert hash_ids(pa.array([" ab "]), strip=True)[0][0] == hash_ids(pa.array(["ab"]))[0][0]
    assert hash_ids(pa.array([" ab "]))[0][0] != hash_ids(pa.array(["ab"]))[0][0]
    # Beyond int64: uint64 bits, like a uint64 column.
    big = 2**64 - 1
    assert hash_ids(pa.array([str(big)]))[0][0] == hash_ids(pa.array([big], pa.uint64()))[0][0] == _fmix_ref(big)


def test_missing_ids_are_flagged_not_hashed() -> None:
    _, ok = hash_ids(pa.array(["a", None, "", "b"]))
    assert ok.tolist() == [True, False, False, True]
    _, ok = hash_ids(pa.array([1.0, float("nan"), None]))
    assert ok.tolist() == [True, False, False]
    _, ok = hash_ids(pa.array(["a", None, "a"]).dictionary_encode())
    assert ok.tolist() == [True, False, True]
    with pytest.raises(TypeError, match="cannot use a column of type"):
        hash_ids(pa.array([[1, 2]]))


def test_buckets_are_uniform_and_in_range() -> None:
    ids = pa.array(np.arange(200_000, dtype=np.int64))
    buckets = bucketize_ids(hash_ids(ids)[0], 100)
    counts = np.bincount(buckets, minlength=100)
    assert buckets.min() >= 0 and buckets.max() < 100 and len(counts) == 100
    chi2 = ((counts - 2000) ** 2 / 2000).sum()
    assert chi2 < 200  # 99 degrees of freedom: p < 1e-7 to exceed
    with pytest.raises(ValueError, match="num_embeddings must be in"):
        bucketize_ids(np.zeros(1, np.uint64), 0)


def test_hash_is_stable_across_processes() -> None:
    # Load hashing.py alone (numpy + pyarrow), not the package, to keep the two interpreter starts cheap.
    code = ("import importlib.util as u, sys, pyarrow as pa; "
            f"s = u.spec_from_file_location('h', {hashing.__file__!r}); m = u.module_from_spec(s); "
            "s.loader.exec_module(m); "
            "print(m.bucketize_ids(m.hash_ids(pa.array(['user_42', '99', 'ä']))[0], 1 << 20).tolist())")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(out.stdout.strip())
    here = str(bucketize_ids(hash_ids(pa.array(["user_42", "99", "ä"]))[0], 1 << 20).tolist())
    assert outputs == {here}


def test_group_ids_keep_integers_and_hash_text() -> None:
    ids, ok = group_ids(pa.array(["5", "x", None, "12"]))
    assert ok.tolist() == [True, True, False, True]
    assert ids[0] == 5 and ids[3] == 12
    assert 0 <= ids[1] < 2**63 and ids[1] == _fmix_ref(_fnv_ref(b"x")) & (2**63 - 1)
    assert group_ids(pa.array([5, 12]))[0].tolist() == [5, 12]
    assert group_ids(pa.array([5.0, 12.0]))[0].tolist() == [5, 12]


def test_canonical_ids_expose_integers() -> None:
    key, is_int, ok = canonical_ids(pa.array(["3", "b", None]))
    assert is_int.tolist()[:2] == [True, False] and ok.tolist() == [True, True, False]
    assert key[0] == 3 and key[1] == _fnv_ref(b"b")
