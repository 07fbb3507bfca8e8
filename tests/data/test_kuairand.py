"""KuaiRand: the shipped schema files read the real subset in ../shared/data and the official 19-column logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from smes_rec.data.config import DataConfig, SplitConfig
from smes_rec.data.loader import build_dataloader
from smes_rec.data.source import DataSource
from smes_rec.data.synthetic import LOG_COLUMNS
from tests.data.helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "data"


def test_subset_loads_with_user_features_joined(shared_data: Path, tmp_path: Path) -> None:
    cfg = DataConfig(schema=str(CONFIGS / "kuairand_subset.yaml"), data_root=str(shared_data), batch_size=1024,
                     num_workers=0, cache_dir=str(tmp_path),
                     split=SplitConfig(by="time", valid_start=20220419, test_start=20220420))
    source = DataSource.open(cfg)
    assert source.num_rows == 41_828
    counts = {s: int(source.split_counts(s).sum()) for s in ("train", "valid", "test")}
    assert sum(counts.values()) == 41_828 and min(counts.values()) > 1000
    batches = list(build_dataloader(cfg, "all", source=source))
    real = torch.cat([b.weights[0] for b in batches]) > 0
    assert int(real.sum()) == 41_828
    labels = torch.cat([b.labels for b in batches], dim=1)[:, real]
    rates = dict(zip(source.schema.task_names, labels.mean(1).tolist(), strict=True))
    # The README's rates: is_click 65.7%, long_view 46.2%, is_profile_enter 5.3%, is_comment 3.0%,
    # is_forward 0.78%, is_follow 0.73%, like 80.7%.
    expected = {"is_click": 0.657, "long_view": 0.462, "is_profile_enter": 0.053, "is_comment": 0.030,
                "is_forward": 0.0078, "is_follow": 0.0073, "like": 0.807}
    for task, rate in expected.items():
        assert rates[task] == pytest.approx(rate, abs=0.0006), task
    groups = torch.cat([b.group_ids for b in batches])[real]
    assert len(torch.unique(groups)) == 664
    # Every user joins the side table: user features are never empty bags (onehot_feat4 has missing cells).
    for name in ("user_active_degree", "register_days_range", "onehot_feat3"):
        lengths = torch.cat([b.sparse_features[name].lengths() for b in batches])[real]
        assert bool((lengths == 1).all()), name
    empty4 = float((torch.cat([b.sparse_features["onehot_feat4"].lengths() for b in batches])[real] == 0).float()
                   .mean())
    assert 0 < empty4 < 0.2
    dense = torch.cat([b.dense_features for b in batches])[real]
    assert bool(torch.isfinite(dense).all())
    col = source.schema.dense_feature_names.index("register_days")
    train_mean, train_std = source.fitted_transform().dense["register_days"]
    assert 14 <= train_mean <= 3650 and train_std > 0
    assert abs(float(dense[:, col].mean())) < 0.2


def test_official_log_schema_reads_19_column_logs(tmp_path: Path, synthetic_dir: Path) -> None:
    """The synthetic log has KuaiRand's 19 columns and user table: written as KuaiRand-Pure CSV files."""
    data = tmp_path / "KuaiRand-Pure" / "data"
    data.mkdir(parents=True)
    log = pq.read_table(synthetic_dir / "log" / "part-00000.parquet").slice(0, 3000)
    assert tuple(log.column_names) == LOG_COLUMNS
    pacsv.write_csv(log.slice(0, 2000), data / "log_standard_4_08_to_4_21_pure.csv")
    pacsv.write_csv(log.slice(2000), data / "log_standard_4_22_to_5_08_pure.csv")
    pacsv.write_csv(log.slice(0, 10), data / "log_random_4_22_to_5_08_pure.csv")  # not a standard log: ignored
    pacsv.write_csv(pq.read_table(synthetic_dir / "user_features.parquet"), data / "user_features_pure.csv")
    cfg = DataConfig(schema=str(CONFIGS / "kuairand.yaml"), data_root=str(data), batch_size=500, num_workers=0,
                     shuffle=False, cache_dir=str(tmp_path / "cache"))
    source = DataSource.open(cfg)
    assert [Path(f.path).name for f in source.files] == ["log_standard_4_08_to_4_21_pure.csv",
                                                         "log_standard_4_22_to_5_08_pure.csv"]
    batches = list(build_dataloader(cfg, "all", source=source))
    assert len(batches) == 6
    labels = torch.cat([b.labels for b in batches], dim=1)
    for t, name in enumerate(source.schema.task_names):
        assert labels[t].tolist() == log.column(name).to_numpy().astype(np.float32).tolist(), name
    assert torch.cat([b.group_ids for b in batches]).tolist() == log.column("user_id").to_pylist()
    degree = torch.cat([b.sparse_features["user_active_degree"].lengths() for b in batches])
    assert float(degree.float().mean()) > 0.95  # joined (about 1% of synthetic users have an empty degree)
