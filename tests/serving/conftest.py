"""Fixtures: tiny trained runs (one per arch, made on first use) shared by the serving tests of a session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serving.helpers import train_tiny


@pytest.fixture(scope="session")
def serving_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic-data cache of the serving tests."""
    return tmp_path_factory.mktemp("serving_cache")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, serving_cache: Path) -> Callable[[str], Path]:
    """``arch -> output folder`` of a tiny run of that arch, trained once per session. Tests must not write there.

    SMES trains 40 steps (the int8 quality check needs predictions that are not all near-ties); the others 4.
    """
    runs: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("serving_runs")

    def get(arch: str) -> Path:
        if arch not in runs:
            runs[arch] = train_tiny(root / arch, serving_cache, arch, 40 if arch == "smes" else 4)
        return runs[arch]

    return get
