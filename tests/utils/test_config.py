"""The strict YAML -> frozen dataclass loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from smes_rec.utils.config import ConfigError, apply_overrides, from_mapping, load_yaml, to_mapping


@dataclass(frozen=True)
class Inner:
    k: int = 2
    widths: tuple[int, ...] = (4, 2)
    lr: float = 0.1


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    kind: Literal["smes", "mmoe"] = "smes"
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


def test_nested_conversion_and_round_trip() -> None:
    cfg = from_mapping(Outer, {"name": "a", "inner": {"k": 3, "widths": [8], "lr": 1}, "kind": "mmoe"})
    assert cfg == Outer("a", Inner(3, (8,), 1.0), "mmoe")
    assert isinstance(cfg.inner.lr, float)
    assert from_mapping(Outer, to_mapping(cfg)) == cfg


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "a", "typo": 1}, r"unknown key\(s\) \['typo'\]"),
    ({"name": "a", "inner": {"kk": 1}}, r"inner\.kk"),
    ({"name": 3}, "name: expected a string"),
    ({"name": "a", "inner": {"k": "3"}}, "inner.k: expected an integer"),
    ({"name": "a", "inner": {"k": True}}, "inner.k: expected an integer"),
    ({"name": "a", "inner": {"widths": 4}}, "inner.widths: expected a list"),
    ({"name": "a", "inner": {"widths": [1, "x"]}}, r"inner.widths\[1\]"),
    ({"name": "a", "kind": "ple"}, "kind: 'ple' is not one of"),
    ({}, "name: required key is missing"),
    ({"name": ""}, "name must not be empty"),
])
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, data, source="cfg.yaml")


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ninner:\n  k: 4\n")
    cfg = load_yaml(Outer, path, ["inner.lr=0.5", "seed=7", "inner.widths=[3, 2]"])
    assert cfg == Outer("run", Inner(4, (3, 2), 0.5), seed=7)
    assert apply_overrides(cfg, ["kind=mmoe"]).kind == "mmoe"
    with pytest.raises(ConfigError, match="unknown key 'inner.kay'"):
        load_yaml(Outer, path, ["inner.kay=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_yaml(Outer, path, ["seed"])
    with pytest.raises(ConfigError, match="inner.k: expected an integer"):
        load_yaml(Outer, path, ["inner.k=many"])
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(Outer, tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(Outer, tmp_path / "bad.yaml")
