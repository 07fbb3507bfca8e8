"""The heterogeneous synthetic kind: deterministic, calibrated, and its two knobs do what they say."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smes_rec.data.config import SyntheticConfig
from smes_rec.data.heterogeneous import WITHIN_GROUP, task_weight_vectors
from smes_rec.data.synthetic import (
    POSITIVE_RATE_RANGES,
    TASKS,
    ensure_synthetic,
    generate,
    generator_fingerprint,
    heterogeneous_label_model,
)

BASE = SyntheticConfig(num_rows=120_000, num_users=3_000, num_items=10_000, seed=5, kind="heterogeneous")


def _labels(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    log = pq.read_table(directory / "log")
    y_Tn = np.stack([log.column(t).to_numpy().astype(np.float64) for t in TASKS])
    return y_Tn, log.column("user_id").to_numpy(), log.column("video_id").to_numpy()


@pytest.fixture(scope="module")
def related(tmp_path_factory: pytest.TempPathFactory) -> dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The same world with strongly positive and strongly negative relatedness between the task groups."""
    out = {}
    for rel in (0.9, -0.9):
        path = tmp_path_factory.mktemp(f"rel{rel}")
        generate(path, replace(BASE, relatedness=rel, segment_shift=0.3))
        out[rel] = _labels(path)
    return out


def test_same_seed_same_files_other_seed_or_kind_other_labels(tmp_path: Path) -> None:
    cfg = replace(BASE, num_rows=20_000)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg, row_group_rows=1000)
    generate(tmp_path / "c", replace(cfg, seed=6))
    generate(tmp_path / "d", replace(cfg, kind="kuairand_like"))
    a, b, c = (pq.read_table(tmp_path / x / "log") for x in "abc")
    d = pq.read_table(tmp_path / "d" / "log")
    assert a.equals(b) and not a.equals(c)
    # Same users, videos and impressions as the default kind; only the labels differ.
    for col in ("user_id", "video_id", "time_ms", "tab"):
        assert a.column(col).equals(d.column(col))
    assert not a.column("is_like").equals(d.column("is_like"))
    for side in ("user_features.parquet", "video_features.parquet"):
        assert pq.read_table(tmp_path / "a" / side).equals(pq.read_table(tmp_path / "d" / side))


def test_positive_rates_hit_the_targets(related) -> None:
    y_Tn, _, _ = related[0.9]
    for t, rate in zip(TASKS, y_Tn.mean(1), strict=True):
        lo, hi = POSITIVE_RATE_RANGES[t]
        assert lo <= rate <= hi, (t, rate)


def test_relatedness_changes_the_label_correlation_across_groups(related) -> None:
    def cross_group(y_Tn: np.ndarray) -> float:
        corr = np.corrcoef(y_Tn[:3])  # is_click, long_view (watch-time) vs is_like (interaction)
        return float(corr[0, 2] + corr[1, 2])

    pos, neg = cross_group(related[0.9][0]), cross_group(related[-0.9][0])
    assert pos - neg > 0.1 and neg < 0, (pos, neg)
    # Within the watch-time group the correlation does not depend on the knob.
    within = [np.corrcoef(related[r][0][:2])[0, 1] for r in (0.9, -0.9)]
    assert within[0] > 0.03 and abs(within[0] - within[1]) < 0.015, within


def test_task_vector_cosines_follow_the_construction() -> None:
    for rel in (-0.5, 0.0, 0.7):
        w_STL = task_weight_vectors(np.random.default_rng(0), [0, 0, 1, 1], rel, 3, 0.0)
        np.testing.assert_allclose(np.linalg.norm(w_STL, axis=-1), 1.0, atol=1e-12)
        cos = w_STL[0] @ w_STL[0].T
        np.testing.assert_allclose(cos[0, 1], WITHIN_GROUP**2, atol=1e-12)
        np.testing.assert_allclose(cos[0, 2], WITHIN_GROUP**2 * rel, atol=1e-12)
        np.testing.assert_allclose(w_STL[0], w_STL[2], atol=1e-12)  # no shift: every segment alike
    w_STL = task_weight_vectors(np.random.default_rng(0), [0, 1], 0.5, 2, 1.0)
    np.testing.assert_allclose(np.einsum("tl,tl->t", w_STL[0], w_STL[1]), 0.0, atol=0.25)


def _logistic_fit(x_nD: np.ndarray, y_n: np.ndarray, steps: int = 25) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression by Newton's method."""
    x = np.hstack([x_nD, np.ones((len(x_nD), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(len(w))
        w -= np.linalg.solve(hess, x.T @ (p - y_n) + 1e-3 * w)
    return w


def _segment_cosines(cfg: SyntheticConfig, directory: Path) -> np.ndarray:
    """Cosines between the per-segment logistic fits of is_click on the latent interaction."""
    generate(directory, cfg)
    y_Tn, user, item = _labels(directory)
    model = heterogeneous_label_model(cfg)
    x_nL, seg_n = model.interaction(user, item), model.segment(user, item)
    fits = np.stack([_logistic_fit(x_nL[seg_n == s], y_Tn[0][seg_n == s])[:-1] for s in range(cfg.num_segments)])
    fits /= np.linalg.norm(fits, axis=1, keepdims=True)
    return (fits @ fits.T)[np.triu_indices(cfg.num_segments, 1)]


def test_segments_change_the_label_function(tmp_path: Path) -> None:
    cfg = replace(BASE, num_rows=80_000, num_segments=3)
    same = _segment_cosines(replace(cfg, segment_shift=0.0), tmp_path / "same")
    shifted = _segment_cosines(replace(cfg, segment_shift=0.9), tmp_path / "shifted")
    assert same.min() > 0.9, same  # one label function: the fits agree up to noise
    assert shifted.max() < 0.6, shifted  # each segment its own function


def test_fingerprint_versions_the_kind_and_keeps_the_default_key(tmp_path: Path) -> None:
    default = generator_fingerprint(SyntheticConfig())
    assert set(default) == {"version", "row_group_rows", "num_rows", "num_users", "num_items", "seed",
                            "rows_per_file"}  # unchanged since before the heterogeneous kind
    het = generator_fingerprint(replace(SyntheticConfig(), kind="heterogeneous"))
    assert het["heterogeneous_version"] >= 1 and het["kind"] == "heterogeneous"
    assert generator_fingerprint(replace(SyntheticConfig(), kind="heterogeneous", relatedness=0.1)) != het
    small = replace(BASE, num_rows=5_000, num_users=200, num_items=500)
    assert ensure_synthetic(small, tmp_path) != ensure_synthetic(replace(small, kind="kuairand_like"), tmp_path)


def test_bad_knobs_are_errors() -> None:
    with pytest.raises(ValueError, match="relatedness"):
        SyntheticConfig(kind="heterogeneous", relatedness=1.5)
    with pytest.raises(ValueError, match="segment_shift"):
        SyntheticConfig(kind="heterogeneous", segment_shift=-0.1)
    with pytest.raises(ValueError, match="num_segments"):
        SyntheticConfig(kind="heterogeneous", num_segments=0)
    with pytest.raises(ValueError, match="kind"):
        SyntheticConfig(kind="other")  # type: ignore[arg-type]
