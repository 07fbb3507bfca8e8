"""The training loop on 2 gloo ranks: pipeline == plain loop, resume == uninterrupted, NaN guard at and between
log steps, unequal batch counts, and checkpoints loading at another world size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from smes_rec.train.build import Placement, build_for_training
from smes_rec.train.config import OptimConfig, ScheduleConfig
from smes_rec.train.distributed import DistContext
from smes_rec.train.loop import NonFiniteLossError, Trainer
from tests.dist import run_workers
from tests.train.helpers import MODEL, InMemorySource

BATCH = 16


def _trainer(rank: int, world_size: int, out: Path, schedule: ScheduleConfig, **source_kwargs) -> Trainer:
    torch.manual_seed(0)
    source = InMemorySource(rank, world_size, rows_per_rank=BATCH * 5, batch_size=BATCH, **source_kwargs)
    ctx = DistContext(rank, world_size, 0, torch.device("cpu"))
    built = build_for_training(MODEL, source, OptimConfig(embedding_lr=0.1, dense_lr=0.01),
                               Placement("table_wise", ctx.device, BATCH))
    return Trainer(source, built, schedule=schedule, ctx=ctx, output_dir=out, progress=False)


def _pipeline_vs_plain_worker(rank: int, world_size: int, workdir: Path) -> None:
    schedule = ScheduleConfig(max_steps=7, log_every=2, eval_every=3, eval_batches=2)
    trainer = _trainer(rank, world_size, workdir / "pipelined", schedule)
    trainer.save()  # step 0: the plain loop starts from the same weights
    trainer.fit()

    plain = _trainer(rank, world_size, workdir / "plain", schedule)
    plain.restore(workdir / "pipelined" / "checkpoints" / "step_000000000")
    losses = []
    for epoch in range(2):
        for batch in plain.data.batches("train", epoch, 0):
            if len(losses) == 7:
                break
            plain.optimizer.zero_grad()
            loss, out = plain.model(batch)
            loss.backward()
            plain.optimizer.step()
            summed = torch.cat([out.task_losses_T, out.aux_loss.view(1)])
            dist.all_reduce(summed)
            losses.append(float(summed.sum()) / world_size)
    torch.save({"pipelined": trainer.step_losses, "plain": losses}, workdir / f"losses{rank}.pt")


@pytest.mark.dist
def test_train_pipeline_losses_equal_a_plain_loop(tmp_path: Path) -> None:
    run_workers(_pipeline_vs_plain_worker, 2, tmp_path)
    for rank in range(2):
        losses = torch.load(tmp_path / f"losses{rank}.pt")
        # 5 batches per epoch: the 7 steps cross an epoch boundary, with validation at step 3 in between.
        assert len(losses["pipelined"]) == 7
        assert losses["pipelined"] == pytest.approx(losses["plain"], rel=1e-5, abs=1e-6)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    """This rank's parameters: local shards of sharded tables, full dense tensors."""
    out = {}
    for key, value in trainer.model.state_dict().items():
        if hasattr(value, "local_shards"):
            for i, shard in enumerate(value.local_shards()):
                out[f"{key}#{i}"] = shard.tensor.clone()
        elif isinstance(value, torch.Tensor):
            out[key] = value.clone()
    return out


def _resume_worker(rank: int, world_size: int, workdir: Path) -> None:
    full = ScheduleConfig(max_steps=8, log_every=4, checkpoint_every=3)
    straight = _trainer(rank, world_size, workdir / "straight", full)
    straight.fit()

    # A run that got to step 5 but was killed before its next checkpoint: it left step 3 and a half-written
    # step 6 folder. Resuming continues from step 3 and ignores the partial folder.
    crashed = _trainer(rank, world_size, workdir / "crashed", dataclasses.replace(full, max_steps=5))
    crashed.fit()
    dist.barrier()
    ckpts = workdir / "crashed" / "checkpoints"
    if rank == 0:
        import shutil

        shutil.rmtree(ckpts / "step_000000005")
        (ckpts / "step_000000006.tmp").mkdir()
        (ckpts / "step_000000006.tmp" / "garbage").write_text("half written")
    dist.barrier()
    resumed = _trainer(rank, world_size, workdir / "crashed", full)
    assert resumed.restore() and resumed.step == 3 and resumed.position == 3
    resumed.fit()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a}
    torch.save({"diffs": diffs, "steps": resumed.step}, workdir / f"resume{rank}.pt")


@pytest.mark.dist
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path: Path) -> None:
    run_workers(_resume_worker, 2, tmp_path)
    for rank in range(2):
        result = torch.load(tmp_path / f"resume{rank}.pt")
        assert result["steps"] == 8
        assert max(result["diffs"].values()) < 1e-6, result["diffs"]
    ckpts = sorted(p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir())
    # keep_last=3 keeps 3, 6 and 8; the half-written folder was cleared by the next save.
    assert ckpts == ["step_000000003", "step_000000006", "step_000000008"]


def _nan_worker(rank: int, world_size: int, workdir: Path) -> None:
    schedule = ScheduleConfig(max_steps=8, log_every=1, checkpoint_every=2)
    trainer = _trainer(rank, world_size, workdir, schedule, nan_from_batch=3)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    (workdir / f"error{rank}.txt").write_text(str(info.value))


@pytest.mark.dist
def test_nan_loss_stops_every_rank_naming_step_and_task_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    run_workers(_nan_worker, 2, tmp_path)
    for rank in range(2):
        message = (tmp_path / f"error{rank}.txt").read_text()
        assert "non-finite loss at step 4" in message and "task0=nan" in message, message
        assert "step_000000002" in message
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000000002"]
    # The last good checkpoint is complete and finite.
    from smes_rec.train.checkpoint import load_model_weights
    from tests.train.helpers import make_wrapper

    model = make_wrapper("cpu")
    assert load_model_weights(ckpts / "step_000000002", model)["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _late_nan_worker(rank: int, world_size: int, workdir: Path) -> None:
    # Losses are compared every 8 steps, and before every checkpoint: the NaN of step 5 is found at step 6,
    # before its checkpoint is written.
    schedule = ScheduleConfig(max_steps=10, log_every=8, checkpoint_every=3)
    trainer = _trainer(rank, world_size, workdir, schedule, nan_from_batch=4)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    (workdir / f"error{rank}.txt").write_text(f"{trainer.step} {info.value}")


@pytest.mark.dist
def test_nan_between_log_steps_is_named_and_never_checkpointed(tmp_path: Path) -> None:
    run_workers(_late_nan_worker, 2, tmp_path)
    for rank in range(2):
        steps, message = (tmp_path / f"error{rank}.txt").read_text().split(" ", 1)
        assert steps == "6", steps  # detected at the check before the step-6 checkpoint
        assert "non-finite loss at step 5" in message and "task0=nan" in message, message
        assert "step_000000003" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000003"]


def _unequal_worker(rank: int, world_size: int, workdir: Path) -> None:
    # Rank 1 has one train and one valid batch fewer per epoch: both ranks run rank 1's count, epoch by epoch.
    schedule = ScheduleConfig(epochs=2, log_every=3, eval_every=2)
    trainer = _trainer(rank, world_size, workdir, schedule, short_by=rank)
    metrics = trainer.fit()
    (workdir / f"unequal{rank}.txt").write_text(f"{trainer.step} {trainer.epoch} {metrics['task0'].num_examples}")


@pytest.mark.dist
def test_ranks_with_unequal_batch_counts_stop_together(tmp_path: Path) -> None:
    run_workers(_unequal_worker, 2, tmp_path)
    for rank in range(2):
        steps, epoch, examples = (tmp_path / f"unequal{rank}.txt").read_text().split()
        assert (steps, epoch) == ("8", "2")  # 2 epochs of min(5, 4) batches
        assert examples == str(2 * (128 // 2 // BATCH - 1) * BATCH)  # 3 valid batches on each of the 2 ranks


def test_a_source_yielding_fewer_batches_than_announced_is_an_error() -> None:
    from smes_rec.train.pipeline import bounded

    with pytest.raises(RuntimeError, match="announced 3 batches but yielded only 2"):
        list(bounded(iter([1, 2]), 3))  # type: ignore[list-item]


def _predictions(trainer: Trainer, batch_index: int) -> torch.Tensor:
    batch = list(trainer.data.batches("valid", 0, 0))[batch_index]
    trainer.model.eval()
    with torch.no_grad():
        return trainer.model(batch)[1].probs_TB


def _save_at_two_worker(rank: int, world_size: int, workdir: Path) -> None:
    trainer = _trainer(rank, world_size, workdir / "run", ScheduleConfig(max_steps=3, log_every=1))
    trainer.fit()
    torch.save(_predictions(trainer, 0), workdir / f"probs{rank}.pt")


def _load_at_one_worker(rank: int, world_size: int, workdir: Path) -> None:
    trainer = _trainer(rank, world_size, workdir / "run", ScheduleConfig(max_steps=3, log_every=1))
    assert trainer.restore() and trainer.step == 3
    # One rank reads both halves of the validation data: batches 0 and 4 are the two ranks' first batches.
    torch.save([_predictions(trainer, 0), _predictions(trainer, 4)], workdir / "probs_ws1.pt")


@pytest.mark.dist
def test_checkpoint_from_two_ranks_loads_at_one_rank_and_unsharded(tmp_path: Path) -> None:
    run_workers(_save_at_two_worker, 2, tmp_path)
    run_workers(_load_at_one_worker, 1, tmp_path)
    at_two = [torch.load(tmp_path / f"probs{r}.pt") for r in range(2)]
    at_one = torch.load(tmp_path / "probs_ws1.pt")
    for r in range(2):
        torch.testing.assert_close(at_one[r], at_two[r])

    from smes_rec.train.checkpoint import CheckpointManager, load_model_weights
    from tests.train.helpers import make_wrapper

    unsharded = make_wrapper("cpu", seed=123)  # different init: everything must come from the checkpoint
    latest = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    load_model_weights(latest, unsharded)
    source = InMemorySource(0, 2, rows_per_rank=BATCH * 5, batch_size=BATCH)
    unsharded.eval()
    with torch.no_grad():
        torch.testing.assert_close(unsharded(next(source.batches("valid", 0, 0)))[1].probs_TB, at_two[0])
