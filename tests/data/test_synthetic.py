"""The synthetic generator: deterministic, calibrated positive rates, learnable structure, generated on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smes_rec.data.config import DataConfig, SyntheticConfig
from smes_rec.data.loader import build_dataloader
from smes_rec.data.synthetic import LOG_COLUMNS, POSITIVE_RATE_RANGES, TASKS, ensure_synthetic, generate


def _read(directory: Path):
    return (pq.read_table(directory / "log"), pq.read_table(directory / "user_features.parquet"),
            pq.read_table(directory / "video_features.parquet"))


def test_same_seed_same_data_and_sharding_does_not_matter(tmp_path: Path) -> None:
    cfg = SyntheticConfig(num_rows=20_000, num_users=500, num_items=1_000, seed=7, rows_per_file=20_000)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", SyntheticConfig(**{**cfg.__dict__, "rows_per_file": 6_000}), row_group_rows=1000)
    generate(tmp_path / "c", SyntheticConfig(**{**cfg.__dict__, "seed": 8}))
    a, b, c = _read(tmp_path / "a"), _read(tmp_path / "b"), _read(tmp_path / "c")
    assert len(list((tmp_path / "b" / "log").glob("*.parquet"))) == 4
    for x, y in zip(a, b, strict=True):
        assert x.equals(y)
    assert not a[0].equals(c[0]) and not a[1].equals(c[1])
    log = a[0]
    assert tuple(log.column_names) == LOG_COLUMNS and log.num_rows == 20_000
    assert a[1].num_rows == 500 and a[2].num_rows == 1_000 and a[1].num_columns == 31 and a[2].num_columns == 12
    time_ms = log.column("time_ms").to_numpy()
    assert (np.diff(time_ms) >= 0).all()  # time-ordered
    dates = log.column("date").to_numpy()
    assert dates.min() == 20220408 and dates.max() == 20220421


@pytest.fixture(scope="module")
def log300k(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("syn300k")
    generate(out, SyntheticConfig(num_rows=300_000, num_users=5_000, num_items=20_000, seed=11))
    return pq.read_table(out / "log")


def test_positive_rates_are_in_the_stated_ranges(log300k) -> None:
    rates = {t: float(log300k.column(t).to_numpy().mean()) for t in TASKS}
    for t, (lo, hi) in POSITIVE_RATE_RANGES.items():
        assert lo <= rates[t] <= hi, (t, rates[t])
    assert rates["is_click"] > 0.5 and rates["is_hate"] < 0.01  # skewed: from ~60% down to <1%
    # Engagement needs a click; long views are more likely after one.
    click = log300k.column("is_click").to_numpy().astype(bool)
    for t in ("is_like", "is_comment", "is_follow", "is_forward", "is_profile_enter"):
        assert not log300k.column(t).to_numpy()[~click].any()
    long_view = log300k.column("long_view").to_numpy().astype(bool)
    assert long_view[click].mean() > 1.5 * long_view[~click].mean()


def _gauc(score: np.ndarray, y: np.ndarray, users: np.ndarray) -> float:
    """Impression-weighted mean per-user AUC over users with both classes (ties count one half)."""
    order = np.lexsort((score, users))
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1]])
    total = weight = 0.0
    for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        idx = order[a:b]
        yy, s = y[idx], score[idx]
        pos = yy.sum()
        neg = len(yy) - pos
        if pos == 0 or neg == 0:
            continue
        _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
        ranks = (np.cumsum(cnt) - (cnt - 1) / 2)[inv]
        total += (ranks[yy == 1].sum() - pos * (pos + 1) / 2) / (pos * neg) * len(yy)
        weight += len(yy)
    return total / weight


def test_labels_depend_on_who_meets_which_video(log300k) -> None:
    users = log300k.column("user_id").to_numpy()
    videos = log300k.column("video_id").to_numpy()
    half = len(users) // 2
    counts = np.bincount(videos, minlength=20_000)
    popular = counts.max() / max(np.median(counts[counts > 0]), 1)
    assert popular > 20  # power-law popularity
    for task in ("is_click", "is_like"):
        y = log300k.column(task).to_numpy().astype(np.int64)
        # A video's positive rate on the first half ranks the second half's impressions within each user.
        pos = np.bincount(videos[:half], weights=y[:half], minlength=20_000)
        seen = np.bincount(videos[:half], minlength=20_000)
        score = (pos + 5 * y[:half].mean()) / (seen + 5)
        assert _gauc(score[videos[half:]], y[half:], users[half:]) > 0.55, task
        shuffled = np.random.default_rng(0).permutation(score[videos[half:]])
        assert abs(_gauc(shuffled, y[half:], users[half:]) - 0.5) < 0.02


def test_synthetic_is_the_default_data_and_is_generated_once(tmp_path: Path) -> None:
    small = SyntheticConfig(num_rows=12_000, num_users=300, num_items=800, seed=1)
    cfg = DataConfig(batch_size=256, num_workers=0, cache_dir=str(tmp_path), synthetic=small)
    assert cfg.schema == "synthetic"
    loader = build_dataloader(cfg, "train")
    batch = next(iter(loader))
    assert batch.labels.shape == (8, 256) and len(loader) == int(loader.counts.sum()) // 256
    root = ensure_synthetic(small, tmp_path)
    assert (root / "_SUCCESS").exists()
    stamp = (root / "log" / "part-00000.parquet").stat().st_mtime_ns
    assert ensure_synthetic(small, tmp_path) == root
    assert (root / "log" / "part-00000.parquet").stat().st_mtime_ns == stamp
    assert len([p for p in (tmp_path / "synthetic").iterdir() if p.is_dir()]) == 1
