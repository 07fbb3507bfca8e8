"""End-to-end training throughput of the full TorchRec model: SMES vs MMoE (same E) vs equal-FLOP MMoE.

Each (model, world size) job trains on the built-in synthetic data (tens of sparse features, tables up to ~10^6
rows) through TrainPipelineSparseDist, on batches cached in memory so the data pipeline is timed separately;
jobs run in rotation, ``--rounds`` times, and the table reports median examples/s, their ratios and the peak RSS
per process. The data pipeline alone is then timed on one rank's share and compared with what training consumes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/e2e.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import dataclasses
import itertools
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tqdm import tqdm

from smes_rec.data.config import DataConfig, SyntheticConfig
from smes_rec.models.factory import ModelConfig, build_arch
from smes_rec.modules.cost import arch_cost
from smes_rec.modules.routing import routing_stats
from smes_rec.train.build import Placement, build_for_training
from smes_rec.train.config import OptimConfig
from smes_rec.train.data import LoaderSource
from smes_rec.train.distributed import DistContext
from smes_rec.utils.logging import quiet_third_party
from smes_rec.utils.memory import keep_freed_memory


class _Cached:
    """A DataSource replaying a few cached batches (the model is timed, not the loader)."""

    def __init__(self, source: LoaderSource, num_batches: int):
        self.task_names, self.feature_names = source.task_names, source.feature_names
        self.tables, self.num_dense = source.tables, source.num_dense
        self.has_groups = source.has_groups
        self.cache = list(itertools.islice(source.batches("train", 0, 0), num_batches))

    def num_batches(self, split: str) -> int:
        return len(self.cache)

    def batches(self, split: str, epoch: int, skip: int):
        return itertools.cycle(self.cache)


def _job(rank: int, world_size: int, workdir: str, data_cfg: DataConfig, model: ModelConfig, steps: int,
         warmup: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1" if world_size > 1 else os.environ.get("OMP_NUM_THREADS", "2")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    quiet_third_party()
    keep_freed_memory()  # as apps/train.py does
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rdzv", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    data = _Cached(LoaderSource(data_cfg, rank, world_size), 8)
    ctx = DistContext(rank, world_size, 0, torch.device("cpu"))
    built = build_for_training(model, data, OptimConfig(), Placement("auto", ctx.device, data_cfg.batch_size))
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    pipeline = TrainPipelineSparseDist(built.model, built.optimizer, ctx.device)
    batches = data.batches("train", 0, 0)
    routed = []  # the timed steps' routing ids, read afterwards (a host read per step would stall the pipeline)
    for i in range(warmup + steps):
        if i == warmup:
            dist.barrier()
            start = time.perf_counter()
        out = pipeline.progress(batches)
        if i >= warmup:
            routed.append(out.routing.ids_BTK)
    dist.barrier()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    unique = [float(routing_stats(ids, model.num_experts).num_unique_B.float().mean()) for ids in routed]
    result = {"examples_per_s": steps * data_cfg.batch_size * world_size / seconds, "peak_rss_mb": peak_mb,
              "mean_unique": statistics.mean(unique)}
    (Path(workdir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_job(world_size: int, data_cfg: DataConfig, model: ModelConfig, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        mp.spawn(_job, args=(world_size, workdir, data_cfg, model, steps, warmup), nprocs=world_size, join=True)
        ranks = [json.loads((Path(workdir) / f"rank{r}.json").read_text()) for r in range(world_size)]
    return {"examples_per_s": ranks[0]["examples_per_s"], "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
            "mean_unique": ranks[0]["mean_unique"]}


def loader_rows_per_s(data_cfg: DataConfig, world_size: int) -> float:
    """One rank's share of an epoch read through the real DataLoader (workers as configured), file to KJT batches.

    Times a whole epoch (many blocks), after a first epoch that starts the persistent workers.
    """
    source = LoaderSource(data_cfg, 0, world_size)
    for _ in source.batches("train", 0, 0):
        pass
    start = time.perf_counter()
    n = sum(1 for _ in source.batches("train", 1, 0))
    return n * data_cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    quiet_third_party()
    data_cfg = DataConfig(batch_size=args.batch_size, num_workers=1,
                          synthetic=SyntheticConfig(num_rows=400_000, num_users=50_000, num_items=500_000))
    LoaderSource(data_cfg)  # generate the data once, before timing
    E = args.experts
    base = ModelConfig(arch="smes", num_experts=E, k_shared=2, k_adaptive=1, bottom_layers=(512,),
                       expert_layers=(256, 128), tower_layers=(64,))
    models = {f"SMES(E={E})": base, f"MMoE(E={E})": dataclasses.replace(base, arch="mmoe")}
    results: dict[tuple[str, int], list[dict]] = {}
    equal = None
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for ws in args.world_sizes:
            for name, model in models.items():
                results.setdefault((name, ws), []).append(run_job(ws, data_cfg, model, args.steps, args.warmup))
            if equal is None:
                e_equal = max(1, round(results[(f"SMES(E={E})", ws)][0]["mean_unique"]))
                equal = f"MMoE(E={e_equal}) equal FLOPs"
                models[equal] = dataclasses.replace(base, arch="mmoe", num_experts=e_equal)
                results.setdefault((equal, ws), []).append(run_job(ws, data_cfg, models[equal], args.steps,
                                                                   args.warmup))
    print(f"\nsynthetic data, {len(LoaderSource(data_cfg).feature_names)} sparse features, batch {args.batch_size} "
          f"per rank, {args.steps} timed steps after {args.warmup} warm-up, median of {args.rounds} rounds\n")
    num_tasks = len(LoaderSource(data_cfg).task_names)
    width = base.bottom_layers[-1]
    mflops = {name: arch_cost(build_arch(model, width, num_tasks), width).flops_per_instance / 1e6
              for name, model in models.items()}
    print("| world size | model | examples/s | SMES / model (examples/s) | peak RSS per process (MB) "
          "| arch MFLOPs/instance (arch_cost) |")
    print("|---|---|---|---|---|---|")
    for ws in args.world_sizes:
        smes = statistics.median(r["examples_per_s"] for r in results[(f"SMES(E={E})", ws)])
        for name in models:
            rs = results.get((name, ws), [])
            if not rs:
                continue
            eps = statistics.median(r["examples_per_s"] for r in rs)
            print(f"| {ws} | {name} | {eps:.0f} | {smes / eps:.2f} | {max(r['peak_rss_mb'] for r in rs):.0f} "
                  f"| {mflops[name]:.3f} |")
    ws = max(args.world_sizes)
    consume = statistics.median(r["examples_per_s"] for r in results[(f"SMES(E={E})", ws)]) / ws
    deliver = loader_rows_per_s(data_cfg, ws)
    print(f"\ndata pipeline alone (one rank's share of {ws}, {data_cfg.num_workers} worker): {deliver:.0f} rows/s; "
          f"SMES training consumes {consume:.0f} rows/s per rank: headroom {deliver / consume:.1f}x")


if __name__ == "__main__":
    main()
