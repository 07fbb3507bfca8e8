"""FittedTransform: the versioned JSON form round-trips and malformed content is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smes_rec.data.fitted import META_KEY, FittedTransform, TransformError, load_fitted_transform


def _example() -> FittedTransform:
    return FittedTransform({"age": (31.5, 7.25), "x": (-1e-3, 2.0)}, {"tab": (7, "b", -3, "é")}, num_rows=1234)


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    fitted = _example()
    text = json.dumps(fitted.to_dict())
    assert FittedTransform.from_dict(json.loads(text)) == fitted
    assert fitted.to_dict()["vocabularies"]["tab"] == {"oov_id": 0, "values": [7, "b", -3, "é"]}
    assert fitted.vocab_sizes() == {"tab": 5}
    step = tmp_path / "step_000000001"
    step.mkdir()
    (step / "meta.json").write_text(json.dumps({"step": 1, META_KEY: fitted.to_dict()}))
    assert load_fitted_transform(step) == fitted
    (step / "meta.json").write_text(json.dumps({"step": 1}))
    assert load_fitted_transform(step) is None  # written before transforms were stored


@pytest.mark.parametrize(("edit", "message"), [
    ({"version": 2}, "version 2 is not supported"),
    ({"extra": 1}, r"unknown keys \['extra'\]"),
    ({"dense": {"age": {"mean": 1.0}}}, r"dense\['age'\] must be \{mean, std\}"),
    ({"dense": {"age": {"mean": 1.0, "std": 0.0}}}, "std > 0"),
    ({"vocabularies": {"tab": {"oov_id": 3, "values": []}}}, "oov_id: 0"),
    ({"vocabularies": {"tab": {"oov_id": 0, "values": [1, 1]}}}, "duplicate values"),
    ({"vocabularies": {"tab": {"oov_id": 0, "values": [1.5]}}}, "integers or strings"),
])
def test_malformed_content_is_refused(edit: dict, message: str) -> None:
    data = {**_example().to_dict(), **edit}
    with pytest.raises(TransformError, match=message):
        FittedTransform.from_dict(data, source="meta.json")


def _source_with_x(tmp_path: Path, bad_value: str, bad_row: int, rows: int = 2000,
                   fitted: FittedTransform | None = None):
    from smes_rec.data.config import SplitConfig
    from smes_rec.data.schema import load_schema
    from smes_rec.data.source import DataSource
    from tests.data.helpers import write_schema

    lines = ["x,ok"] + [f"{bad_value if r == bad_row else r % 50},1" for r in range(1, rows + 1)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    write_schema(tmp_path / "s.yaml", {"files": ["d.csv"], "tasks": [{"name": "ok", "column": "ok", "positive": [1]}],
                                       "dense": [{"name": "x", "column": "x", "transform": "standardize"}]})
    return DataSource.from_schema(load_schema(tmp_path / "s.yaml"), split=SplitConfig(fractions=(1.0, 0.0, 0.0)),
                                  cache_dir=tmp_path / "cache", fitted=fitted)


@pytest.mark.parametrize(("value", "why"), [("inf", "is not finite"), ("-inf", "is not finite"),
                                            ("nan", "missing value"),
                                            ("1e200", "so large that the standardisation statistics overflow")])
def test_a_bad_standardize_value_is_blamed_on_its_row(tmp_path: Path, value: str, why: str) -> None:
    from smes_rec.data.schema import DataError

    source = _source_with_x(tmp_path, value, 1950)
    with pytest.raises(DataError, match=rf"d.csv: row 1950 \(line 1951\), column 'x': .*{why}"):
        source.fitted_transform()


def test_a_non_finite_value_with_stored_statistics_is_blamed_on_its_row(tmp_path: Path) -> None:
    from smes_rec.data.config import DataConfig
    from smes_rec.data.loader import build_dataloader
    from smes_rec.data.schema import DataError

    source = _source_with_x(tmp_path, "inf", 1950, fitted=FittedTransform({"x": (3.0, 2.0)}))
    with pytest.raises(DataError, match=r"row 1950 \(line 1951\), column 'x': value inf gives inf after transform "
                                        "'standardize'"):
        list(build_dataloader(DataConfig(batch_size=100, num_workers=0, shuffle=False), "all", source=source))


def test_a_transform_missing_what_the_schema_fits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransformError, match="the fitted transform has no dense feature 'x'"):
        _source_with_x(tmp_path, "1", 1, rows=5, fitted=FittedTransform({"other": (0.0, 1.0)}))
