"""Bad input: every case fails with exit status 2 or a ValueError that names what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml

from apps.evaluate import main as evaluate_main
from smes_rec.evaluation.checkpoint import SchemaMismatchError, check_fingerprint, load_run_config
from smes_rec.evaluation.stream import evaluate_stream
from smes_rec.modules.routing import Routing
from smes_rec.train.checkpoint import CheckpointManager, load_model_weights, write_manifest
from smes_rec.train.wrapper import StepOutput
from smes_rec.utils.config import ConfigError, to_mapping


def _evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = evaluate_main([*args, "--no-progress"])
    return code, capsys.readouterr().err


def _latest(run: Path) -> Path:
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None
    return latest


def _synthetic_schema_file(run: Path, tmp_path: Path, edit: dict) -> list[str]:
    """The tiny run's synthetic data described by a schema YAML (with ``edit`` applied); the --set overrides."""
    from smes_rec.data.synthetic import ensure_synthetic, synthetic_schema

    cfg = load_run_config(CheckpointManager.read_meta(_latest(run)))
    root = ensure_synthetic(cfg.data.synthetic, Path(cfg.data.cache_dir))
    schema = to_mapping(synthetic_schema(cfg.data.synthetic))
    schema.update(edit)
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return ["--set", f"data.schema={path}", "--set", f"data.data_root={root}"]


def test_empty_split(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _evaluate(capsys, "--checkpoint", str(tiny_run), "--split", "valid", "--out", str(tmp_path),
                          "--set", "data.split.fractions=[0.9, 0.0, 0.1]")
    assert code == 2
    assert "the valid split is empty: 0 of 6000 rows" in err and "fractions" in err
    assert not (tmp_path / "metrics.json").exists()


def test_group_column_missing_from_the_data(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = _synthetic_schema_file(tiny_run, tmp_path, {"group": "uid"})
    code, err = _evaluate(capsys, "--checkpoint", str(tiny_run), "--split", "valid", "--out", str(tmp_path / "o"),
                          *overrides)
    assert code == 2
    assert "group: column 'uid' is not in" in err


def test_schema_without_a_group_column(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Evaluated without GAUC: AUC and the rest are reported, GAUC is null / n/a, never an AUC over one group."""
    overrides = _synthetic_schema_file(tiny_run, tmp_path, {"group": None})
    code, _ = _evaluate(capsys, "--checkpoint", str(tiny_run), "--split", "valid", "--out", str(tmp_path / "o"),
                        "--max-batches", "2", *overrides)
    assert code == 0
    tasks = json.loads((tmp_path / "o" / "metrics.json").read_text())["tasks"]
    for m in tasks.values():
        assert m["gauc"] is None and m["gauc_uniform"] is None and m["num_groups"] is None
    assert tasks["is_click"]["auc"] is not None and tasks["is_click"]["log_loss"] > 0
    assert "**GAUC is not available**" in (tmp_path / "o" / "report.md").read_text()


def test_checkpoint_that_does_not_match_the_data(tiny_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from smes_rec.data.synthetic import synthetic_schema

    meta = CheckpointManager.read_meta(_latest(tiny_run))
    cfg = load_run_config(meta)
    (user_rows,) = [t[1] for t in meta["data_fingerprint"]["tables"] if t[0] == "user_id"]
    schema = to_mapping(synthetic_schema(cfg.data.synthetic))
    tasks = [t for t in schema["tasks"] if t["name"] != "is_hate"]
    sparse = [dict(f, num_embeddings=999) if f["name"] == "user_id" else f for f in schema["sparse"]]
    overrides = _synthetic_schema_file(tiny_run, tmp_path, {"tasks": tasks, "sparse": sparse})
    code, err = _evaluate(capsys, "--checkpoint", str(tiny_run), "--split", "valid", "--out", str(tmp_path / "o"),
                          *overrides)
    assert code == 2
    assert "does not match the data schema" in err
    assert "tasks differ (in the checkpoint but not in the data: ['is_hate'])" in err
    assert f"table 'user_id': num_embeddings is {user_rows} in the checkpoint, 999 in the data" in err


def test_fingerprint_differences_are_all_named() -> None:
    saved = {"tasks": ["click", "like"], "features": ["user", "item"], "num_dense": 3,
             "tables": [["t_user", 100, 8, ["user"]], ["t_item", 50, 8, ["item"]]]}
    check_fingerprint(saved, saved, "ckpt")  # identical: no error
    current = {"tasks": ["click", "follow"], "features": ["item", "user"], "num_dense": 4,
               "tables": [["t_user", 100, 16, ["user"]], ["t_item", 60, 8, ["item", "item2"]], ["t_new", 5, 4, ["x"]]]}
    with pytest.raises(SchemaMismatchError) as info:
        check_fingerprint(saved, current, "ckpt")
    message = str(info.value)
    for expected in [
        "checkpoint ckpt does not match the data schema",
        "tasks differ (in the checkpoint but not in the data: ['like']; in the data but not in the checkpoint: "
        "['follow'])",
        "sparse features differ (same names in another order: checkpoint ['user', 'item'], data ['item', 'user'])",
        "embedding tables differ (in the data but not in the checkpoint: ['t_new'])",
        "table 't_user': dim is 8 in the checkpoint, 16 in the data",
        "table 't_item': num_embeddings is 50 in the checkpoint, 60 in the data",
        "table 't_item': features is ['item'] in the checkpoint, ['item', 'item2'] in the data",
        "dense features: 3 in the checkpoint, 4 in the data",
    ]:
        assert expected in message, (expected, message)


def test_nan_predictions_from_a_checkpoint(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from smes_rec.models.factory import build_ranker
    from smes_rec.train.data import LoaderSource
    from smes_rec.train.wrapper import TrainWrapper

    # A copy of the checkpoint whose like-tower output bias is NaN (the like task is the 3rd, index 2).
    source = _latest(tiny_run)
    cfg = load_run_config(CheckpointManager.read_meta(source))
    data = LoaderSource(cfg.data)
    wrapper = TrainWrapper(build_ranker(cfg.model, data.tables, data.feature_names, data.num_dense,
                                        len(data.task_names), "cpu"), [1.0] * len(data.task_names), 0.0)
    load_model_weights(source, wrapper)
    state = wrapper.state_dict()
    bias_T1 = state["model.dense_model.towers.mlp.biases.1"]  # the towers' output layer, one logit per task
    assert bias_T1.shape == (len(data.task_names), 1)
    bias_T1[2] = float("nan")
    broken = tmp_path / "checkpoints" / "step_000000008"
    dcp.save({"model": state}, checkpoint_id=broken, no_dist=True)
    shutil.copy(source / "meta.json", broken / "meta.json")
    shutil.copy(source / "rng_rank0.pt", broken / "rng_rank0.pt")
    write_manifest(broken)  # a consistent (committed) checkpoint whose weights hold a NaN

    code, err = _evaluate(capsys, "--checkpoint", str(broken), "--split", "valid", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "split 'valid', batch 0: task 'is_like': predictions contain NaN" in err


def _step_output(labels_TB: torch.Tensor) -> StepOutput:
    T, B = labels_TB.shape
    ids_BTK = torch.zeros(B, T, 1, dtype=torch.int64)
    return StepOutput(
        task_losses_T=torch.zeros(T), aux_loss=torch.tensor(0.0),
        probs_TB=torch.full((T, B), 0.5), labels_TB=labels_TB, weights_TB=torch.ones(T, B),
        group_ids_B=torch.arange(B),
        routing=Routing(ids_BTK, torch.ones(B, T, 1), torch.full((B, T, 2), 0.5)),
    )


def test_nan_labels_name_the_batch_and_task() -> None:
    good = _step_output(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    bad = _step_output(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"split 'test', batch 1: task 'b': labels contain NaN"):
        evaluate_stream([good, bad], ["a", "b"], split="test")


def test_no_batches_is_an_empty_split() -> None:
    with pytest.raises(ValueError, match=r"split 'valid': the evaluation split is empty"):
        evaluate_stream([], ["a"], split="valid")


def test_model_overrides_are_refused(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _evaluate(capsys, "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--set", "model.num_experts=4")
    assert code == 2
    assert "may only override data.*" in err
    with pytest.raises(ConfigError, match="unknown key"):
        load_run_config(CheckpointManager.read_meta(_latest(tiny_run)), ["data.no_such_key=1"])


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _evaluate(capsys, "--checkpoint", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, err = _evaluate(capsys, "--checkpoint", str(tmp_path / "empty"))
    assert code == 2 and "holds no complete checkpoint" in err


def test_checkpoint_without_config(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "step_000000001"
    shutil.copytree(_latest(tiny_run), checkpoint)
    meta = json.loads((checkpoint / "meta.json").read_text())
    del meta["config"]
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    write_manifest(checkpoint)  # consistent, as an older smes-rec would have written it
    code, err = _evaluate(capsys, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    assert code == 2 and "holds no training config" in err
