"""The training loop on 2 gloo ranks: pipeline == plain loop, resume == uninterrupted, NaN guard, bad resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from smes_rec.train.distributed import DistContext
from smes_rec.train.loop import NonFiniteLossError, OptimConfig, ScheduleConfig, Trainer
from tests.dist import run_workers
from tests.train.helpers import MODEL, InMemorySource

BATCH = 16


def _trainer(rank: int, world_size: int, out: Path, schedule: ScheduleConfig, **source_kwargs) -> Trainer:
    torch.manual_seed(0)
    source = InMemorySource(rank, world_size, rows_per_rank=BATCH * 5, batch_size=BATCH, **source_kwargs)
    ctx = DistContext(rank, world_size, 0, torch.device("cpu"))
    return Trainer(source, MODEL, OptimConfig(embedding_lr=0.1, dense_lr=0.01), schedule, "table_wise", BATCH, out,
                   ctx, progress=False)


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
