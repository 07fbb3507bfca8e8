"""Sharded training equals an unsharded replica, and TrainPipelineSparseDist equals a plain loop (2 gloo ranks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from smes_rec.train.sharding import apply_embedding_optimizer, make_dense_optimizer, shard_model
from tests.dist import run_workers
from tests.train.helpers import TABLES, make_rows, make_wrapper, to_batch

PER_RANK = 8
EMB_LR, DENSE_LR = 0.5, 0.01


def _sharded(rank: int, workdir: Path, sharding: str, embedding_optimizer: str = "sgd"):
    """A sharded model initialised from the replica's checkpoint in workdir/init (written by rank 0)."""
    if rank == 0:
        dcp.save(make_wrapper("cpu").state_dict(), checkpoint_id=workdir / "init", no_dist=True)
    dist.barrier()
    model = make_wrapper("meta")
    apply_embedding_optimizer(model, embedding_optimizer, EMB_LR)
    dmp = shard_model(model, TABLES, sharding, torch.device("cpu"), PER_RANK)
    state = dmp.state_dict()
    dcp.load(state, checkpoint_id=workdir / "init")
    dmp.load_state_dict(state)
    return dmp, make_dense_optimizer(dmp, "adam", DENSE_LR)


def _step_equivalence_worker(rank: int, world_size: int, workdir: Path, sharding: str) -> None:
    dmp, optimizer = _sharded(rank, workdir, sharding)
    rows = make_rows(PER_RANK * world_size, seed=1)
    batch = to_batch(rows, rank * PER_RANK, (rank + 1) * PER_RANK)
    results = {}
    for step in range(2):
        optimizer.zero_grad()
        loss, out = dmp(batch)
        results[f"probs{step}"] = out.probs_TB
        results[f"loss{step}"] = loss.detach()
        loss.backward()
        optimizer.step()
    torch.save(results, workdir / f"rank{rank}.pt")


@pytest.mark.dist
@pytest.mark.parametrize("sharding", ["table_wise", "row_wise", "column_wise"])
def test_sharded_forward_and_step_equal_unsharded_replica(tmp_path: Path, sharding: str) -> None:
    world_size = 2
    run_workers(_step_equivalence_worker, world_size, tmp_path, sharding)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]

    # The replica sees both ranks' batches. DDP averages dense gradients of the per-rank losses (each a mean over
    # the rank's rows, plus the rank's load-balancing statistic); sharded embeddings receive the *sum* of every
    # rank's gradient. So: dense grads of mean_r(loss_r), embedding grads of sum_r(loss_r).
    replica = make_wrapper("cpu")
    rows = make_rows(PER_RANK * world_size, seed=1)
    batches = [to_batch(rows, r * PER_RANK, (r + 1) * PER_RANK) for r in range(world_size)]
    emb = [p for n, p in replica.named_parameters() if "embedding_bag_collection" in n]
    dense = [p for n, p in replica.named_parameters() if "embedding_bag_collection" not in n]
    emb_opt, dense_opt = torch.optim.SGD(emb, lr=EMB_LR), torch.optim.Adam(dense, lr=DENSE_LR)
    for step in range(2):
        emb_opt.zero_grad()
        dense_opt.zero_grad()
        outs = [replica(b) for b in batches]
        for r, (loss, out) in enumerate(outs):
            torch.testing.assert_close(out.probs_TB, ranks[r][f"probs{step}"], msg=f"step {step} rank {r} predictions")
            torch.testing.assert_close(loss.detach(), ranks[r][f"loss{step}"], msg=f"step {step} rank {r} loss")
        (sum(loss for loss, _ in outs) / world_size).backward()
        for p in emb:
            p.grad.mul_(world_size)
        emb_opt.step()
        dense_opt.step()
