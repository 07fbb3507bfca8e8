"""A seeded synthetic data set with the KuaiRand log schema: the built-in default data.

The world: ``num_users`` users and ``num_items`` videos, each with a hidden 8-dimensional factor. Videos belong to
authors (similar factors), have a Zipf(1.1) popularity, a hidden quality, a duration and 1-2 topic tags derived from
their factor; users have a log-normal activity (how many impressions they get), per-task propensities, and observable
profile features (KuaiRand's user table: activity degree, follower counts, ``onehot_feat*`` buckets of projections
of the hidden factor, some missing). Impressions are time-ordered over 14 days (2022-04-08 .. 2022-04-21, Beijing
time), with a tab and an hour that shift click rates.

Labels (8 binary tasks) come from logistic models on the hidden affinity ``user . video``, the video quality, the
user's propensity and context; ``is_like``, ``is_profile_enter``, ``is_comment``, ``is_follow`` and ``is_forward``
only happen after a click, ``long_view`` is more likely after one, ``is_hate`` grows as affinity falls. Each task's
intercept is calibrated (bisection on the expected rate of a fixed sample) so its positive rate lands in
``POSITIVE_RATE_RANGES``: from about 60% (``is_click``) down to 0.2% (``is_hate``). Because labels depend on who
meets which video, per-user AUC (GAUC) is meaningful and learnable from the id and profile features.

Output (``generate``): ``log/part-*.parquet`` (the 19 KuaiRand log columns), ``user_features.parquet`` (31 columns)
and ``video_features.parquet`` (12 columns), as in KuaiRand; ``synthetic_schema`` joins them. Everything is
vectorised numpy, generated chunk by chunk (memory stays flat at tens of millions of rows); the same parameters give
identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from smes_rec.data.cache import cache_key, locked
from smes_rec.data.config import SyntheticConfig
from smes_rec.data.heterogeneous import VERSION as HETEROGENEOUS_VERSION
from smes_rec.data.heterogeneous import HeterogeneousLabels
from smes_rec.data.schema import DatasetSchema, DenseFeature, Join, SparseFeature, Task
from smes_rec.data.shards import ShardWriter

__all__ = [
    "LOG_COLUMNS",
    "POSITIVE_RATE_RANGES",
    "TASKS",
    "ensure_synthetic",
    "generate",
    "generator_fingerprint",
    "heterogeneous_label_model",
    "synthetic_schema",
]

GENERATOR_VERSION = 1
TASKS = ("is_click", "long_view", "is_like", "is_profile_enter", "is_comment", "is_follow", "is_forward", "is_hate")
_TARGET = (0.60, 0.30, 0.04, 0.02, 0.01, 0.006, 0.004, 0.002)
# The stated ranges the generated positive rates fall in (the target +-15%, which covers sampling noise from ~100k
# rows up).
POSITIVE_RATE_RANGES = {t: (round(r * 0.85, 5), round(r * 1.15, 5)) for t, r in zip(TASKS, _TARGET, strict=True)}
LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
    "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time", "comment_stay_time",
    "is_profile_enter", "is_rand", "tab",
)
ROW_GROUP_ROWS = 16384
_K = 8  # hidden factor size
_START_MS = 1649347200000  # 2022-04-08 00:00 Beijing time
_DAY_MS = 86_400_000
_DAYS = 14
_ONEHOT_CARD = (2, 7, 50, 1000, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)
_ONEHOT_MISSING = (4, 12, 13, 14, 15, 16, 17)
_CALIBRATION_ROWS = 100_000
_CHUNK_ROWS = 1 << 16
# Per task: weight of affinity, of video quality, of the click (long_view only), and whether a click gates it.
_TASK_MODEL = {
    "is_click": (1.2, 0.5, 0.0, False),
    "long_view": (0.8, 0.4, 1.0, False),
    "is_like": (1.5, 0.8, 0.0, True),
    "is_profile_enter": (1.0, 0.3, 0.0, True),
    "is_comment": (1.2, 0.6, 0.0, True),
    "is_follow": (1.5, 0.2, 0.0, True),
    "is_forward": (1.0, 1.0, 0.0, True),
    "is_hate": (-1.5, -0.8, 0.0, False),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _zipf_weights(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf(a) popularity over ``n`` entities in a random order, normalised to sum 1."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -a
    return rng.permutation(w / w.sum())


def _ranges(x: np.ndarray, edges: list[float], labels: list[str]) -> np.ndarray:
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges), x, side="left")]


class _World:
    """Users, videos and the label model (everything but the impressions), from ``(seed, sizes)``."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        rng = np.random.default_rng([cfg.seed, 0])
        nu, ni = cfg.num_users, cfg.num_items
        t = len(TASKS)
        scale = _K**-0.25  # so a user . video affinity has unit variance
        self.user_vec = rng.normal(size=(nu, _K)) * scale
        activity = rng.lognormal(0.0, 1.0, nu)
        self.user_cdf = np.cumsum(activity / activity.sum())
        self.user_bias = rng.normal(0.0, 0.4, (nu, t))
        num_authors = max(1, ni // 10)
        author_vec = rng.normal(size=(num_authors, _K))
        self.author = rng.choice(num_authors, size=ni, p=_zipf_weights(num_authors, 1.0, rng))
        self.item_vec = (0.7 * author_vec[self.author] + 0.7 * rng.normal(size=(ni, _K))) * scale
        self.item_cdf = np.cumsum(_zipf_weights(ni, 1.1, rng))
        self.quality = rng.normal(size=ni)
        self.duration = np.clip(rng.lognormal(np.log(25_000), 0.8, ni), 1_000, 600_000).astype(np.int64)
        self.tab_effect = rng.normal(0.0, 0.3, 15)
        self.tab_p = _zipf_weights(15, 1.5, np.random.default_rng([cfg.seed, 5]))
        self.users = self._user_table(rng, activity)
        self.items = self._item_table(rng, num_authors)
        self.hetero: HeterogeneousLabels | None = None
        if cfg.kind == "heterogeneous":  # its own random stream: users, videos and impressions stay the same
            s = cfg.num_segments
            self.hetero = HeterogeneousLabels(
                np.random.default_rng([cfg.seed, 10]), TASKS, self.user_vec, self.item_vec,
                self.users.column("onehot_feat2").to_numpy() % s, self.tag1 % s, cfg.relatedness, s,
                cfg.segment_shift)
            user, item, _ = self.sample(np.random.default_rng([cfg.seed, 2]), _CALIBRATION_ROWS)
            self.hetero.standardize_on(user, item)
        self.intercepts = self._calibrate(cfg)

    def _user_table(self, rng: np.random.Generator, activity: np.ndarray) -> pa.Table:
        nu = len(activity)
        act_rank = np.argsort(np.argsort(-activity)) / nu
        degree = _ranges(act_rank, [0.3, 0.6, 0.85], ["full_active", "high_active", "middle_active", "low_active"])
        degree[rng.random(nu) < 0.01] = ""  # KuaiRand has a few users of unknown degree
        z = (np.log(activity) - np.log(activity).mean()) / np.log(activity).std()
        live = (rng.random(nu) < 0.05).astype(np.int64)
        author = (rng.random(nu) < 0.2 + 0.3 * live).astype(np.int64)
        follow = np.clip(rng.lognormal(3.0 + 0.5 * z, 1.2), 0, 5000).astype(np.int64)
        fans = np.clip(rng.lognormal(1.5 + 2.0 * author, 2.0), 0, 2_000_000).astype(np.int64)
        friends = np.clip(rng.lognormal(1.5, 1.3, nu), 0, 5000).astype(np.int64)
        register = np.clip(14 + rng.lognormal(6.0, 1.0, nu), 14, 3650).astype(np.int64)
        cols: dict[str, pa.Array] = {
            "user_id": pa.array(np.arange(nu, dtype=np.int64)),
            "user_active_degree": pa.array(degree.astype(str)),
            "is_lowactive_period": pa.array((act_rank > 0.95).astype(np.int64)),
            "is_live_streamer": pa.array(live),
            "is_video_author": pa.array(author),
            "follow_user_num": pa.array(follow),
            "follow_user_num_range": pa.array(_ranges(follow, [0, 10, 50, 100, 150, 250, 500], [
                "0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"]).astype(str)),
            "fans_user_num": pa.array(fans),
            "fans_user_num_range": pa.array(_ranges(fans, [0, 9, 99, 999, 4999, 9999, 99999], [
                "0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)", "[10w,100w)"]).astype(str)),
            "friend_user_num": pa.array(friends),
            "friend_user_num_range": pa.array(_ranges(friends, [0, 4, 29, 59, 119, 249], [
                "0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"]).astype(str)),
            "register_days": pa.array(register),
            "register_days_range": pa.array(_ranges(register, [14, 30, 60, 90, 180, 365, 730], [
                "8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"]).astype(str)),
        }
        # onehot_feat*: quantile buckets of random projections of the hidden factor, so profiles carry signal.
        proj = self.user_vec @ rng.normal(size=(_K, len(_ONEHOT_CARD)))
        for j, card in enumerate(_ONEHOT_CARD):
            rank = np.argsort(np.argsort(proj[:, j] + 0.5 * rng.normal(size=nu))) / nu
            value = np.minimum((rank * card).astype(np.int64), card - 1)
            mask = rng.random(nu) < 0.03 if j in _ONEHOT_MISSING else None
            cols[f"onehot_feat{j}"] = pa.array(value, mask=mask)
        return pa.table(cols)

    def _item_table(self, rng: np.random.Generator, num_authors: int) -> pa.Table:
        ni = len(self.quality)
        topics = self.item_vec @ rng.normal(size=(_K, 50))
        tag1 = topics.argmax(1)
        self.tag1 = tag1  # a video's first tag (the heterogeneous kind's video segment)
        tag2 = rng.integers(0, 50, ni)
        two = (rng.random(ni) < 0.3) & (tag2 != tag1)
        tag = np.where(two, np.char.add(np.char.add(tag1.astype(str), ","), tag2.astype(str)), tag1.astype(str))
        num_music = max(1, ni // 5)
        music = rng.choice(num_music, size=ni, p=_zipf_weights(num_music, 1.0, rng))
        sizes = np.array([[720, 1280], [1080, 1920], [540, 960], [720, 720]])
        size = sizes[rng.choice(4, size=ni, p=[0.7, 0.15, 0.1, 0.05])]
        upload_types = np.array(["ShortImport", "LongImport", "Web", "Kmovie", "FollowShoot", "PhotoCopy",
                                 "LongPost", "ShareFromOtherApp"])
        day = rng.integers(0, 52, ni)
        return pa.table({
            "video_id": pa.array(np.arange(ni, dtype=np.int64)),
            "author_id": pa.array(self.author.astype(np.int64) * 7 + 1_000_000),
            "video_type": pa.array(np.where(rng.random(ni) < 0.03, "AD", "NORMAL")),
            "upload_dt": pa.array([f"2022-{3 + d // 31:02d}-{d % 31 + 1:02d}" for d in day]),
            "upload_type": pa.array(upload_types[rng.choice(8, size=ni, p=_zipf_weights(8, 1.2, rng))]),
            "visible_status": pa.array(np.zeros(ni, np.int64)),
            "video_duration": pa.array(self.duration.astype(np.float64)),
            "server_width": pa.array(size[:, 0].astype(np.float64)),
            "server_height": pa.array(size[:, 1].astype(np.float64)),
            "music_id": pa.array(music.astype(np.int64) * 13 + 9_000_000_000),
            "music_type": pa.array(rng.choice([4.0, 8.0, 9.0, 11.0], size=ni)),
            "tag": pa.array(tag.astype(str)),
        })

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Users, videos and tabs of ``n`` impressions."""
        user = np.minimum(np.searchsorted(self.user_cdf, rng.random(n) * self.user_cdf[-1]), len(self.user_cdf) - 1)
        item = np.minimum(np.searchsorted(self.item_cdf, rng.random(n) * self.item_cdf[-1]), len(self.item_cdf) - 1)
        tab = rng.choice(15, size=n, p=self.tab_p)
        return user, item, tab

    def logits(self, user: np.ndarray, item: np.ndarray, tab: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """``[T, n]`` logits without intercepts (and without the click term of long_view)."""
        if self.hetero is not None:
            out = self.hetero.logits(user, item, self.user_bias)
            out[0] += self.tab_effect[tab]  # is_click also depends on the context
            return out
        affinity = np.einsum("nk,nk->n", self.user_vec[user], self.item_vec[item])
        context = self.tab_effect[tab] + 0.2 * ((hour >= 18) & (hour <= 23))
        out = np.empty((len(TASKS), len(user)))
        for t, name in enumerate(TASKS):
            a, b, _, _ = _TASK_MODEL[name]
            out[t] = a * affinity + b * self.quality[item] + self.user_bias[user, t]
            if name in ("is_click", "long_view"):
                out[t] += context
            if name == "long_view":
                out[t] -= 0.5 * np.log(self.duration[item] / 25_000)
        return out

    def _calibrate(self, cfg: SyntheticConfig) -> np.ndarray:
        """Intercepts whose expected positive rates on a fixed sample hit the targets."""
        rng = np.random.default_rng([cfg.seed, 2])
        user, item, tab = self.sample(rng, _CALIBRATION_ROWS)
        hour = rng.integers(0, 24, _CALIBRATION_ROWS)
        z = self.logits(user, item, tab, hour)
        out = np.zeros(len(TASKS))
        p_click = np.ones(_CALIBRATION_ROWS)  # P(click) per row, once the click task is calibrated
        for t, name in enumerate(TASKS):
            _, _, click_w, gated = _TASK_MODEL[name] if self.hetero is None else (0, 0, 0.0, False)
            lo, hi = -30.0, 30.0
            for _ in range(32):  # the expected rate is increasing in the intercept
                mid = 0.5 * (lo + hi)
                p = _sigmoid(mid + z[t])
                if gated:
                    p = p_click * p
                elif click_w:
                    p = p_click * _sigmoid(mid + z[t] + click_w) + (1 - p_click) * p
                lo, hi = (mid, hi) if p.mean() < _TARGET[t] else (lo, mid)
            out[t] = 0.5 * (lo + hi)
            if name == "is_click":
                p_click = _sigmoid(out[t] + z[t])
        return out

    def impressions(self, rng: np.random.Generator, rows: np.ndarray, num_rows: int) -> pa.Table:
        """The log rows with global indices ``rows`` (time-ordered over the 14 days)."""
        n = len(rows)
        time_ms = _START_MS + ((rows + rng.random(n)) / num_rows * (_DAYS * _DAY_MS)).astype(np.int64)
        local = time_ms - _START_MS  # ms since 2022-04-08 00:00 Beijing time
        day = local // _DAY_MS
        hour = (local % _DAY_MS) // 3_600_000
        user, item, tab = self.sample(rng, n)
        z = self.logits(user, item, tab, hour) + self.intercepts[:, None]
        y = {}
        click = rng.random(n) < _sigmoid(z[0])
        for t, name in enumerate(TASKS):
            if self.hetero is not None:  # independent draws given the logits: no click gating
                y[name] = click if t == 0 else rng.random(n) < _sigmoid(z[t])
                continue
            _, _, click_w, gated = _TASK_MODEL[name]
            if name == "is_click":
                y[name] = click
                continue
            p = _sigmoid(z[t] + click_w * click)
            y[name] = (rng.random(n) < p) & (click if gated else True)
        duration = self.duration[item]
        play = np.where(y["long_view"], duration * rng.uniform(0.9, 2.0, n),
                        duration * rng.uniform(0.0, 0.6, n) * (0.3 + 0.7 * click)).astype(np.int64)
        profile_stay = np.where(y["is_profile_enter"], rng.lognormal(9, 1, n), 0).astype(np.int64)
        comment_stay = np.where(y["is_comment"] | (click & (rng.random(n) < 0.1)), rng.lognormal(9, 1, n), 0)
        date = np.array([20220408 + d for d in range(_DAYS)], dtype=np.int64)[np.minimum(day, _DAYS - 1)]
        flag = lambda a: pa.array(a.astype(np.int8))  # noqa: E731
        return pa.table({
            "user_id": pa.array(user.astype(np.int64)),
            "video_id": pa.array(item.astype(np.int64)),
            "date": pa.array(date),
            "hourmin": pa.array(hour * 100),
            "time_ms": pa.array(time_ms),
            "is_click": flag(y["is_click"]),
            "is_like": flag(y["is_like"]),
            "is_follow": flag(y["is_follow"]),
            "is_comment": flag(y["is_comment"]),
            "is_forward": flag(y["is_forward"]),
            "is_hate": flag(y["is_hate"]),
            "long_view": flag(y["long_view"]),
            "play_time_ms": pa.array(play),
            "duration_ms": pa.array(duration),
            "profile_stay_time": pa.array(profile_stay),
            "comment_stay_time": pa.array(comment_stay.astype(np.int64)),
            "is_profile_enter": flag(y["is_profile_enter"]),
            "is_rand": flag(np.zeros(n, bool)),
            "tab": pa.array(tab.astype(np.int64)),
        })


def generate(out_dir: str | Path, cfg: SyntheticConfig | None = None, *, row_group_rows: int = ROW_GROUP_ROWS,
             progress: bool | None = None) -> list[Path]:
    """Writes the synthetic data set to ``out_dir`` (see the module docstring for the layout).

    Args:
        out_dir: The output directory (created; its previous log shards and side tables are replaced).
        cfg: Sizes and seed (default: ``SyntheticConfig()``).
        row_group_rows: Rows per Parquet row group.
        progress: Show a progress bar over rows (None: only when stderr is a terminal).

    Returns:
        The log files written.
    """
    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    (out / "log").mkdir(parents=True, exist_ok=True)
    for old in (out / "log").glob("part-*.parquet"):
        old.unlink()  # a smaller data set must not inherit shards of a larger one
    world = _World(cfg)
    pq.write_table(world.users, out / "user_features.parquet")
    pq.write_table(world.items, out / "video_features.parquet")
    # Rows come in fixed global chunks, each from its own seeded stream, so the content does not depend on how it
    # is cut into files and row groups.
    bar = tqdm(total=cfg.num_rows, desc="synthetic data", unit="row", unit_scale=True, dynamic_ncols=True,
               disable=None if progress is None else not progress)
    with ShardWriter(out / "log", cfg.rows_per_file, row_group_rows, _log_schema()) as shards:
        for lo in range(0, cfg.num_rows, _CHUNK_ROWS):
            table = world.impressions(np.random.default_rng([cfg.seed, 1, lo]),
                                      np.arange(lo, min(lo + _CHUNK_ROWS, cfg.num_rows)), cfg.num_rows)
            shards.write(table)
            bar.update(table.num_rows)
    bar.close()
    return shards.files


def heterogeneous_label_model(cfg: SyntheticConfig) -> HeterogeneousLabels:
    """The hidden label model of a ``heterogeneous`` data set (latent interactions and segments), for analysis.

    Args:
        cfg: The generator parameters (``kind: heterogeneous``).

    Returns:
        The :class:`~smes_rec.data.heterogeneous.HeterogeneousLabels` that generated its labels.
    """
    if cfg.kind != "heterogeneous":
        raise ValueError(f"the {cfg.kind!r} kind has no heterogeneous label model")
    world = _World(cfg)
    assert world.hetero is not None
    return world.hetero


def _log_schema() -> pa.Schema:
    flags = {"is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view",
             "is_profile_enter", "is_rand"}
    return pa.schema([(c, pa.int8() if c in flags else pa.int64()) for c in LOG_COLUMNS])


_HETEROGENEOUS_FIELDS = ("kind", "num_segments", "relatedness", "segment_shift")


def generator_fingerprint(cfg: SyntheticConfig) -> dict[str, Any]:
    """What identifies the generated files: the generator versions, the row-group size and every parameter.

    The default ``kuairand_like`` kind keeps the fingerprint it had before the heterogeneous kind existed (its
    parameters only), so its cached data stays valid; the ``heterogeneous`` kind adds its parameters and its label
    model's version (``smes_rec.data.heterogeneous.VERSION``).

    Args:
        cfg: The generator parameters.

    Returns:
        A JSON-serialisable mapping (the cache key is its digest).
    """
    params = asdict(cfg)
    if cfg.kind == "kuairand_like":
        params = {k: v for k, v in params.items() if k not in _HETEROGENEOUS_FIELDS}
    else:
        params["heterogeneous_version"] = HETEROGENEOUS_VERSION
    return {"version": GENERATOR_VERSION, "row_group_rows": ROW_GROUP_ROWS, **params}


def ensure_synthetic(cfg: SyntheticConfig, cache_dir: Path) -> Path:
    """Returns the directory holding the synthetic data of ``cfg``, generating it on first use.

    Concurrent callers (ranks of one machine) wait for a single generation; the directory appears atomically.

    Args:
        cfg: The generator parameters.
        cache_dir: The cache root.

    Returns:
        The data directory.
    """
    key = cache_key(generator_fingerprint(cfg))
    final = cache_dir / "synthetic" / key
    if (final / "_SUCCESS").exists():
        return final
    with locked(final):
        if not (final / "_SUCCESS").exists():
            tmp = final.with_name(f"{key}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            generate(tmp, cfg)
            (tmp / "_SUCCESS").write_text(json.dumps(asdict(cfg), indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    return final


def _buckets(n: int) -> int:
    """Hash buckets for ``n`` distinct ids: about 2n, rounded up to a multiple of 1024."""
    return max(1024, -(-2 * n // 1024) * 1024)


def synthetic_schema(cfg: SyntheticConfig | None = None) -> DatasetSchema:
    """The schema of the synthetic data (``configs/data/synthetic.yaml`` is this for the default sizes).

    Args:
        cfg: The generator parameters (they size the id tables).

    Returns:
        The schema, with no ``data_root`` (``DataSource.open`` sets it to the generated directory).
    """
    cfg = cfg or SyntheticConfig()
    small = [
        ("tab", "tab", 32), ("hourmin", "hourmin", 32), ("video_type", "video_type", 8),
        ("upload_type", "upload_type", 16), ("user_active_degree", "user_active_degree", 16),
        ("is_lowactive_period", "is_lowactive_period", 4), ("is_live_streamer", "is_live_streamer", 4),
        ("is_video_author", "is_video_author", 4), ("follow_user_num_range", "follow_user_num_range", 16),
        ("fans_user_num_range", "fans_user_num_range", 16), ("friend_user_num_range", "friend_user_num_range", 16),
        ("register_days_range", "register_days_range", 16),
    ]
    sparse = [
        SparseFeature("user_id", "user_id", dim=16, num_embeddings=_buckets(cfg.num_users)),
        SparseFeature("video_id", "video_id", dim=16, num_embeddings=_buckets(cfg.num_items)),
        SparseFeature("author_id", "author_id", dim=16, num_embeddings=_buckets(max(1, cfg.num_items // 10))),
        SparseFeature("music_id", "music_id", dim=8, num_embeddings=_buckets(max(1, cfg.num_items // 5))),
        SparseFeature("tag", "tag", dim=8, num_embeddings=128, separator=","),
        *(SparseFeature(name, col, dim=4, num_embeddings=n) for name, col, n in small),
        *(SparseFeature(f"onehot_feat{j}", f"onehot_feat{j}", dim=4, num_embeddings=max(8, 2 * card))
          for j, card in enumerate(_ONEHOT_CARD[:6])),
        SparseFeature("duration_bucket", "duration_ms", dim=4,
                      boundaries=(5e3, 1e4, 2e4, 3e4, 6e4, 1.2e5, 3e5)),
    ]
    dense = [
        DenseFeature("duration", "duration_ms", transform="log1p"),
        DenseFeature("follow_user_num", "follow_user_num", transform="log1p", fill=0.0),
        DenseFeature("fans_user_num", "fans_user_num", transform="log1p", fill=0.0),
        DenseFeature("friend_user_num", "friend_user_num", transform="log1p", fill=0.0),
        DenseFeature("register_days", "register_days", transform="standardize", fill=0.0),
        DenseFeature("server_width", "server_width", transform="standardize", fill=720.0),
        DenseFeature("server_height", "server_height", transform="standardize", fill=1280.0),
        DenseFeature("music_type", "music_type", fill=0.0),
        DenseFeature("hour", "hourmin", transform="standardize"),
    ]
    tasks = [Task(t, t, positive=(1.0,), negative=(0.0,)) for t in TASKS]
    return DatasetSchema(
        tasks=tuple(tasks),
        sparse=tuple(sparse),
        dense=tuple(dense),
        group="user_id",
        time="date",
        format="parquet",
        files=("log/*.parquet",),
        joins=(Join("user_features.parquet", key="user_id"), Join("video_features.parquet", key="video_id")),
        description="Synthetic KuaiRand-like log (smes_rec.data.synthetic) with user and video side tables joined.",
    )
