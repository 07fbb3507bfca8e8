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
