"""The data package's layout: modules import only earlier steps of the flow (no cycle, not even in a function), no
module imports another's private names, and the file cache is bounded."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from smes_rec.data.files import FileCache

DATA = Path(__file__).resolve().parents[2] / "smes_rec" / "data"
# The flow, first to last: a module may import only modules listed before it.
FLOW = ("config", "batch", "cache", "fitted", "heterogeneous", "schema", "shards", "synthetic", "files", "cells",
        "hashing", "vocab", "joins", "features", "splits", "fitting", "source", "packing", "loader")


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of every ``from smes_rec... import`` in a file, in functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smes_rec"):
            out.append((node.module, tuple(a.name for a in node.names)))
    return out


def test_every_module_is_placed_in_the_flow() -> None:
    modules = {p.stem for p in DATA.glob("*.py")} - {"__init__"}
    assert modules == set(FLOW)


@pytest.mark.parametrize("module", FLOW)
def test_modules_import_only_earlier_steps(module: str) -> None:
    for name, names in _imports(DATA / f"{module}.py"):
        if name.startswith("smes_rec.data."):
            dep = name.split(".")[2]
            assert FLOW.index(dep) < FLOW.index(module), f"{module} imports {dep}, a later step"
        assert not [n for n in names if n.startswith("_")], f"{module} imports private names from {name}"


def test_file_cache_is_bounded_and_least_recently_used() -> None:
    cache = FileCache(max_entries=2)
    built: list[str] = []

    def build(key: str) -> str:
        built.append(key)
        return key.upper()

    assert cache.get(("a",), lambda: build("a")) == "A"
    assert cache.get(("b",), lambda: build("b")) == "B"
    assert cache.get(("a",), lambda: build("a")) == "A"  # a hit makes "a" the most recent
    cache.get(("c",), lambda: build("c"))  # evicts "b"
    assert len(cache) == 2
    cache.get(("a",), lambda: build("a"))
    cache.get(("b",), lambda: build("b"))
    assert built == ["a", "b", "c", "b"]


def test_file_cache_pickles_empty() -> None:
    """Spawned workers get an empty cache of the same bound (zlib states and open files cannot travel)."""
    cache = FileCache(max_entries=3)
    cache.get(("a",), lambda: object())
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.max_entries == 3 and len(cache) == 1
