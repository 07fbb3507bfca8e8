"""Serving latency of exported packages: SMES against MMoE (same experts), equal-FLOP MMoE and naive top-K.

Every candidate is a full ranker (embedding tables -> bottom -> arch -> towers) exported exactly as
``apps/export.py`` exports a checkpoint (torchrec-quantized embeddings, fx + TorchScript), in fp32 and int8
embeddings, then loaded with ``torch.jit.load``. A request is one user with C candidates (user features identical
on every row, item features varying). Per thread count and C, all packages are called in turn, request after
request (interleaved, so machine noise hits every candidate alike), and the table gives p50/p99 latency over the
requests, throughput (candidates/s at p50), package size and peak RSS (a fresh ``python -I`` per package that
imports only torch and fbgemm_gpu, loads it and serves C_max-candidate requests).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serving.py            # E = 64, D = 128: ~10 min on 2 cores
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/serving.py --quick    # smaller experts, under 3 minutes

Compare ratios, not absolute times: these machines are shared and noisy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _timing import interleaved_medians
from tqdm import tqdm

from smes_rec.data.schema import TableSpec
from smes_rec.models.factory import ModelConfig, build_ranker
from smes_rec.modules.routing import routing_stats
from smes_rec.serving.export import script_ranker
from smes_rec.utils.memory import keep_freed_memory

NUM_DENSE = 16
# A request is one user: these features repeat on every candidate row; the others vary per candidate.
USER_FEATURES = ("user_id", "user_f1", "user_f2", "user_f3")
ITEM_FEATURES = ("item_id", "item_f1", "item_f2", "author_id")
FEATURES = USER_FEATURES + ITEM_FEATURES

_RSS_SCRIPT = """
import ctypes, resource, sys, torch, fbgemm_gpu
if sys.argv[3] == "keep":  # the allocator setting of the timed process (smes_rec.utils.memory)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 2**31 - 1), libc.mallopt(-1, 2**31 - 1)
torch.set_num_threads(1)
m = torch.jit.load(sys.argv[1])
req = torch.load(sys.argv[2])
with torch.no_grad():
    for _ in range(5):
        m(*req)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def tables(rows: int, dim: int) -> list[TableSpec]:
    return [TableSpec(f"t_{f}", rows, dim, (f,)) for f in FEATURES]


def candidates(args: argparse.Namespace, h: torch.Tensor) -> dict[str, ModelConfig]:
    """The four archs; E' of the equal-FLOP MMoE is SMES's mean |U| on a probe batch."""
    from smes_rec.modules import SMESArch

    base = ModelConfig(arch="smes", bottom_layers=(args.in_features,), expert_layers=tuple(args.expert_layers),
                       tower_layers=(32,), num_experts=args.experts, k_shared=args.k_shared,
                       k_adaptive=args.k_adaptive)
    torch.manual_seed(0)
    probe = SMESArch(args.in_features, args.tasks, num_experts=args.experts, k_shared=args.k_shared,
                     k_adaptive=args.k_adaptive, expert_layers=args.expert_layers)
    with torch.no_grad():
        mean_u = float(routing_stats(probe(h).routing.ids_BTK, args.experts).num_unique_B.float().mean())
    e_equal = max(1, round(mean_u))
    return {
        "smes": base,
        f"mmoe_E{args.experts}": ModelConfig(**{**base.__dict__, "arch": "mmoe"}),
        f"mmoe_E'{e_equal}": ModelConfig(**{**base.__dict__, "arch": "mmoe", "num_experts": e_equal}),
        "naive_topk": ModelConfig(**{**base.__dict__, "arch": "naive_topk"}),
    }, mean_u


def request(C: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One user's request: ``(dense_CD, values_N, lengths_FC)`` with one id per feature and candidate."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for f in FEATURES:
        if f in USER_FEATURES:
            values.append(torch.randint(0, rows, (1,), generator=g).expand(C))
        else:
            values.append(torch.randint(0, rows, (C,), generator=g))
    return (torch.randn(C, NUM_DENSE, generator=g), torch.cat(values).long(),
            torch.ones(len(FEATURES) * C, dtype=torch.int32))


def export_all(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Path], float]:
    h = torch.randn(1024, args.in_features)
    configs, mean_u = candidates(args, h)
    paths = {}
    for name, cfg in tqdm(list(configs.items()), desc="export"):
        torch.manual_seed(0)
        ranker = build_ranker(cfg, tables(args.table_rows, args.dim), FEATURES, NUM_DENSE, args.tasks, "cpu")
        for emb in args.embeddings:
            path = folder / f"{name}_{emb}.pt"
            script_ranker(ranker.eval(), FEATURES, emb).save(str(path))
            paths[f"{name} {emb}"] = path
    return paths, mean_u


def peak_rss_mb(model: Path, req: Path, keep_freed: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-I", "-c", _RSS_SCRIPT, str(model), str(req),
                          "keep" if keep_freed else "default"], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return int(out.split()[-1]) / 1024


def time_requests(models: dict[str, torch.jit.ScriptModule], C: int, n: int, rows: int, warmup: int
                  ) -> dict[str, np.ndarray]:
    """Seconds of ``n`` requests per model, the models called in turn on each request."""
    reqs = [request(C, rows, seed) for seed in range(8)]
    with torch.no_grad():
        for m in models.values():
            for i in range(warmup):  # the TorchScript profiling executor specialises on the first calls
                m(*reqs[i % len(reqs)])
        times = {name: np.empty(n) for name in models}
        for i in tqdm(range(n), desc=f"C={C} threads={torch.get_num_threads()}", leave=False):
            req = reqs[i % len(reqs)]
            for name, m in models.items():
                start = time.perf_counter()
                m(*req)
                times[name][i] = time.perf_counter() - start
    return times


def weight_read_ms(num_experts: int, in_features: int, layers: list[int], reads: int = 9) -> tuple[float, float]:
    """MB of all experts' fp32 weights and the median ms of one pass reading them (a memory-bandwidth floor).

    A request whose C * mean|U| dispatched rows spread over every expert must stream every expert's weights once,
    whatever the FLOPs; this is the time of that stream alone, at the current thread count.
    """
    weights = torch.randn(num_experts, sum(a * b + b for a, b in itertools.pairwise([in_features, *layers])))
    seconds = interleaved_medians({"read": weights.sum}, reads, desc="weight read")["read"]
    return weights.numel() * 4 / 1e6, seconds * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller experts (D=64, 32->16) and tables (10k rows): under 3 minutes")
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--k-shared", type=int, default=2)
    parser.add_argument("--k-adaptive", type=int, default=1)
    parser.add_argument("--in-features", type=int, default=None, help="D, the bottom output (128; quick 64)")
    parser.add_argument("--expert-layers", type=int, nargs="+", default=None,
                        help="expert widths (128 64; quick 32 16)")
    parser.add_argument("--table-rows", type=int, default=None, help="rows of every table (100k; quick 10k)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--candidates", type=int, nargs="+", default=[64, 512, 2048])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--embeddings", nargs="+", default=["fp32", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc returning freed buffers to the OS (every request page-faults them in again)")
    args = parser.parse_args()
    if not args.default_allocator:
        keep_freed_memory()  # what a CPU server should do (docs/serving.md): no page faults on per-request buffers
    args.in_features = args.in_features or (64 if args.quick else 128)
    args.expert_layers = args.expert_layers or ([32, 16] if args.quick else [128, 64])
    args.table_rows = args.table_rows or (10_000 if args.quick else 100_000)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths, mean_u = export_all(args, folder)
        torch.save(request(max(args.candidates), args.table_rows, 0), folder / "request.pt")
        keep = not args.default_allocator
        with ThreadPoolExecutor(len(paths)) as pool:  # one fresh process each, all at once: nothing is timed yet
            rss = dict(zip(paths, tqdm(pool.map(lambda p: peak_rss_mb(p, folder / "request.pt", keep), paths.values()),
                                       total=len(paths), desc="peak RSS"), strict=True))
        size = {name: p.stat().st_size / 1e6 for name, p in paths.items()}
        models = {name: torch.jit.load(str(p)).eval() for name, p in paths.items()}
        results, floors = [], {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            floors[threads] = weight_read_ms(args.experts, args.in_features, args.expert_layers)
            for C in args.candidates:
                times = time_requests(models, C, args.requests, args.table_rows, args.warmup)
                for name, ts in times.items():
                    p50, p99 = np.percentile(ts, 50) * 1e3, np.percentile(ts, 99) * 1e3
                    results.append({"model": name, "threads": threads, "C": C, "p50_ms": p50, "p99_ms": p99,
                                    "cand_per_s": C / (p50 / 1e3), "size_mb": size[name], "rss_mb": rss[name]})

    print(f"\nE={args.experts} T={args.tasks} K_s={args.k_shared} K_a={args.k_adaptive}, D={args.in_features}, "
          f"experts {'->'.join(map(str, [args.in_features, *args.expert_layers]))}, {len(FEATURES)} tables of "
          f"{args.table_rows}x{args.dim}; SMES mean |U| = {mean_u:.2f}; {args.requests} requests per cell, "
          f"interleaved; allocator: {'glibc default' if args.default_allocator else 'freed memory kept'}; "
          f"{time.perf_counter() - started:.0f} s\n")
    print("| model | threads | C | p50 ms | p99 ms | candidates/s | package MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['threads']} | {r['C']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['cand_per_s']:.0f} | {r['size_mb']:.2f} | {r['rss_mb']:.0f} |")
    by = {(r["model"], r["threads"], r["C"]): r for r in results}
    print("\nSMES p99 ratios (goal: <= 0.5 x MMoE(E), <= 1.2 x equal-FLOP MMoE)\n")
    print("| embeddings | threads | C | SMES/MMoE(E) p99 | SMES/MMoE(E') p99 | SMES/naive top-K p99 |")
    print("|---|---|---|---|---|---|")
    names = list(dict.fromkeys(r["model"].split(" ")[0] for r in results))
    for emb in args.embeddings:
        for threads in args.threads:
            for C in args.candidates:
                p99 = {n: by[(f"{n} {emb}", threads, C)]["p99_ms"] for n in names}
                print(f"| {emb} | {threads} | {C} | {p99['smes'] / p99[names[1]]:.3f} "
                      f"| {p99['smes'] / p99[names[2]]:.3f} | {p99['smes'] / p99['naive_topk']:.3f} |")
    for threads, (mb, ms) in floors.items():
        print(f"\nmemory floor, {threads} thread(s): the {args.experts} experts' weights are {mb:.1f} MB; one pass "
              f"over them takes {ms:.2f} ms. A request whose rows reach every expert cannot be faster, while the "
              f"equal-FLOP model reads {round(mean_u)} experts' weights.")
    if args.json:
        weight_read = {str(t): {"mb": mb, "ms": ms} for t, (mb, ms) in floors.items()}
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "mean_u": mean_u, "results": results, "weight_read": weight_read}, indent=1))


if __name__ == "__main__":
    main()
