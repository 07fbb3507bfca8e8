"""Forward+backward time of SMESArch against dense MMoE with the same E and with equal activated FLOPs.

Runs the candidates interleaved, round after round, in one process, and prints medians and ratios (compare ratios,
not absolute times: these machines are noisy).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2-core boxes

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from smes_rec import MMoEArch, SMESArch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--in-features", type=int, default=1024)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--k-shared", type=int, default=2)
    parser.add_argument("--k-adaptive", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def step_fn(arch: torch.nn.Module, h: torch.Tensor) -> Callable[[], None]:
    upstream = None

    def step() -> None:
        nonlocal upstream
        arch.zero_grad(set_to_none=True)
        out = arch(h)
        if upstream is None:
            upstream = torch.randn_like(out.task_reprs)
        ((out.task_reprs * upstream).sum() + out.aux_loss).backward()

    return step


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    B, D, T, E = args.batch_size, args.in_features, args.tasks, args.experts
    layers = args.expert_layers
    h = torch.randn(B, D)
    smes = SMESArch(D, T, E, args.k_shared, args.k_adaptive, layers)
    with torch.no_grad():
        mean_unique = smes(h).routing.num_unique_B.float().mean().item()
    e_equal = max(1, round(mean_unique))
    candidates = {
        f"SMES(E={E}, K_s={args.k_shared}, K_a={args.k_adaptive})": smes,
        f"MMoE(E={E})": MMoEArch(D, T, E, layers),
        f"MMoE(E={e_equal}) equal FLOPs": MMoEArch(D, T, e_equal, layers),
    }
    steps = {name: step_fn(arch, h) for name, arch in candidates.items()}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)

    # Activated expert FLOPs per forward+backward (3x the forward's multiply-adds x 2).
    dims = [D, *layers]
    per_row = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:], strict=True)) * 3
    rows = {list(steps)[0]: B * mean_unique, list(steps)[1]: B * E, list(steps)[2]: B * e_equal}
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    smes_name = list(steps)[0]
    print(f"\nB={B} D={D} experts {'->'.join(map(str, dims))} T={T} E={E} K_s={args.k_shared} "
          f"K_a={args.k_adaptive} fp32, threads={torch.get_num_threads()}, rounds={args.rounds}")
    print(f"mean |U| = {mean_unique:.2f} (bound K_s + T*K_a = {args.k_shared + T * args.k_adaptive})\n")
    print(f"| {'model':<34} | median s | expert GFLOP/s | SMES / model |")
    print(f"|{'-' * 36}|----------|----------------|--------------|")
    for name, median in medians.items():
        gflops = rows[name] * per_row / median / 1e9
        print(f"| {name:<34} | {median:8.3f} | {gflops:14.1f} | {medians[smes_name] / median:12.3f} |")


if __name__ == "__main__":
    main()
