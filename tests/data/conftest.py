"""Fixtures for the data pipeline tests: small hand-made data sets and a session-wide synthetic one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smes_rec.data.synthetic import generate
from tests.data.helpers import SHARED_DATA, SMALL_SYNTHETIC

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real KuaiRand subset; tests using it skip when it is absent (a user's checkout has no ../shared)."""
    if not (SHARED_DATA / "kuairand27k_like_hate_subset" / "processed_standard_kcore_15.tsv").is_file():
        pytest.skip(f"../shared/data is not available (looked for {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60k synthetic rows in three Parquet files, generated once per session."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, SMALL_SYNTHETIC, row_group_rows=4096)
    return out
