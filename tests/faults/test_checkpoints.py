"""Damaged checkpoints: the manifest, resuming past a truncated newest checkpoint, evaluation naming the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.evaluate import main as evaluate_main
from smes_rec.evaluation.checkpoint import resolve_checkpoint
from smes_rec.train.checkpoint import CheckpointDamagedError, CheckpointManager, verify_checkpoint

from .train_helpers import copy_run, train

STEP4, STEP8 = "step_000000004", "step_000000008"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_manifest_lists_every_file_with_size_and_checksum(tiny_run: Path) -> None:
    folder = tiny_run / "checkpoints" / STEP8
    listed = json.loads((folder / "manifest.json").read_text())["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(listed) == on_disk and {"meta.json", "rng_rank0.pt", ".metadata"} <= on_disk
    for name, record in listed.items():
        assert record["size"] == (folder / name).stat().st_size and len(record["sha256"]) == 64
    verify_checkpoint(folder)  # intact


@pytest.mark.parametrize(("damage", "message"), [
    ("truncate", "bytes, {size} when saved (truncated or overwritten)"),
    ("flip", "checksum differs from the one saved"),
    ("delete_rng", "RNG state file missing"),
    ("extra", "file not in the manifest"),
])
def test_each_kind_of_damage_names_the_file(tiny_run: Path, tmp_path: Path, damage: str, message: str) -> None:
    folder = copy_run(tiny_run, tmp_path / "run") / "checkpoints" / STEP8
    shard = folder / "__0_0.distcp"
    size = shard.stat().st_size
    targets = {"truncate": shard, "flip": shard, "delete_rng": folder / "rng_rank0.pt", "extra": folder / "stray.bin"}
    bad = targets[damage]
    if damage == "truncate":
        _truncate(shard)
    elif damage == "flip":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "delete_rng":
        bad.unlink()
    else:
        bad.write_bytes(b"x")
    with pytest.raises(CheckpointDamagedError) as info:
        verify_checkpoint(folder)
    assert str(info.value).startswith(f"{bad}: damaged checkpoint")
    assert message.format(size=size) in str(info.value)


def test_folder_without_metadata_is_never_latest(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "checkpoints" / STEP8 / "meta.json").unlink()
    manager = CheckpointManager(run / "checkpoints")
    assert manager.latest() == run / "checkpoints" / STEP4
    assert resolve_checkpoint(run) == run / "checkpoints" / STEP4
    intact, skipped = manager.latest_intact()
    assert intact == run / "checkpoints" / STEP4
    assert [s.path.name for s in skipped] == [STEP8] and "meta.json is missing" in skipped[0].reason


def test_resume_skips_a_truncated_newest_checkpoint(tiny_run: Path, eval_cache: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    shard = run / "checkpoints" / STEP8 / "__0_0.distcp"
    _truncate(shard)
    result = train(run, eval_cache, "schedule.max_steps=10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping checkpoint {STEP8}: {shard}: damaged checkpoint" in result.stderr
    assert "resuming at step 4" in result.stdout and "Validation after 10 steps" in result.stdout
    assert "Traceback" not in result.stderr
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    # The damaged folder is set aside (never picked again); step 8 was trained and saved anew.
    assert names == [STEP4, STEP8, f"{STEP8}.damaged", "step_000000010"]
    for step in (STEP8, "step_000000010"):
        verify_checkpoint(run / "checkpoints" / step)


def test_missing_rng_file_is_damage_on_resume(tiny_run: Path, eval_cache: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "checkpoints" / STEP8 / "rng_rank0.pt").unlink()
    result = train(run, eval_cache, "schedule.max_steps=9")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping checkpoint {STEP8}" in result.stderr and "RNG state file missing" in result.stderr
    assert "resuming at step 4" in result.stdout


def test_evaluating_a_damaged_checkpoint_names_the_bad_file(tiny_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    shard = run / "checkpoints" / STEP8 / "__0_0.distcp"
    _truncate(shard)
    hint = f"the newest intact one is {run / 'checkpoints' / STEP4}"
    for target, extra in ((run / "checkpoints" / STEP8, ""), (run, hint)):
        code = evaluate_main(["--checkpoint", str(target), "--out", str(tmp_path / "eval"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"evaluate.py: error (rank 0): {shard}: damaged checkpoint" in err and extra in err
        assert "Traceback" not in err
    assert not (tmp_path / "eval").exists()
