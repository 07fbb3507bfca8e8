"""build_ranker / build_arch for the paper's baselines: RankMixer's identity bottom and grouping, HoME's categories."""

from __future__ import annotations

import pytest
import torch

from smes_rec import HoMEArch, MoMEArch, RankMixerArch
from smes_rec.models.factory import ModelConfig, build_ranker, rankmixer_column_order
from smes_rec.models.sparse import TableSpec

TABLES = [TableSpec("t_user", 50, 4, ("user",)), TableSpec("t_item", 40, 8, ("item", "history"))]
FEATURES = ["user", "item", "history"]  # columns: user 0..3, item 4..11, history 12..19, then 3 dense 20..22


def test_rankmixer_column_order_groups_features_and_keeps_dense_last() -> None:
    order = rankmixer_column_order([("history", "user")], TABLES, FEATURES, 3)
    assert order == [*range(12, 20), *range(0, 4), *range(4, 12), 20, 21, 22]
    with pytest.raises(ValueError, match="unknown sparse features"):
        rankmixer_column_order([("video",)], TABLES, FEATURES, 3)
    with pytest.raises(ValueError, match="more than once"):
        rankmixer_column_order([("user",), ("user", "item")], TABLES, FEATURES, 3)


def test_rankmixer_ranker_tokenises_the_pooled_embeddings_through_an_identity_bottom() -> None:
    cfg = ModelConfig(arch="rankmixer", rankmixer_tokens=4, rankmixer_dim=8, rankmixer_groups=(("item",),))
    ranker = build_ranker(cfg, TABLES, FEATURES, 3, 2, "cpu")
    model = ranker.dense_model
    assert len(model.bottom) == 0 and isinstance(model.arch, RankMixerArch)
    assert model.arch.column_order_F.tolist() == [*range(4, 12), *range(0, 4), *range(12, 23)]
    x = torch.randn(5, 23)
    torch.testing.assert_close(model.bottom(x), x)


def test_home_and_mome_rankers() -> None:
    home = build_ranker(ModelConfig(arch="home"), TABLES, FEATURES, 3, 3, "cpu",
                        task_names=["is_click", "long_view", "is_like"]).dense_model.arch
    assert isinstance(home, HoMEArch) and home.category_of_task_T.tolist() == [1, 0, 1]
    mome = build_ranker(ModelConfig(arch="mome", mome_warmup_steps=7), TABLES, FEATURES, 3, 3, "cpu").dense_model.arch
    assert isinstance(mome, MoMEArch) and mome.masks.warmup_steps == 7
    with pytest.raises(ValueError, match="task names"):
        build_ranker(ModelConfig(arch="home"), TABLES, FEATURES, 3, 3, "cpu", task_names=["a", "b"])


@pytest.mark.parametrize(("values", "message"), [
    ({"arch": "rankmixer", "rankmixer_tokens": 3}, "rankmixer_* settings: model_dim (64) must be divisible"),
    ({"arch": "rankmixer", "rankmixer_sparse": True, "rankmixer_infer_weight": 0.0}, "infer_weight"),
    ({"arch": "mome", "mome_sigma": 0.0}, "mome_* settings: sigma must be > 0"),
    ({"arch": "home", "home_task_specific": 0}, "home_* settings: task_specific must be >= 1"),
    ({"arch": "home", "home_task_categories": [0, -1]}, "home_task_categories must be >= 0"),
])
def test_bad_baseline_settings_fail_while_the_config_loads(values: dict, message: str) -> None:
    from smes_rec.utils.config import ConfigError, from_mapping

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        from_mapping(ModelConfig, values, "run.yaml")
    # Settings of archs that are not selected are not checked.
    from_mapping(ModelConfig, {**values, "arch": "smes"}, "run.yaml")
