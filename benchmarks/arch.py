"""Forward+backward time of SMESArch against dense MMoE (same E), equal-FLOP MMoE and naive per-task top-K.

Candidates run interleaved, round after round, in one process; the tables print medians and ratios (compare
ratios, not absolute times: these machines are noisy). The default is the headline shape; ``--sweep`` sweeps
E x T x K_s x K_a at a smaller shape so the whole grid runs in minutes on 2 cores.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py --sweep
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import itertools

import torch
from _timing import arch_step, expert_flops_per_row, interleaved_medians
from tqdm import tqdm

from smes_rec import MMoEArch, SMESArch


def reference_gflops(batch: int, in_features: int, out_features: int, rounds: int = 3) -> float:
    """FLOP rate of one plain fp32 matrix product of the experts' first-layer shape (forward+backward)."""
    x = torch.randn(batch, in_features, requires_grad=True)
    w = torch.randn(in_features, out_features, requires_grad=True)
    seconds = interleaved_medians({"mm": lambda: (x @ w).sum().backward()}, rounds, desc="reference")["mm"]
    return 6 * batch * in_features * out_features / seconds / 1e9


def compare(B: int, D: int, layers: list[int], T: int, E: int, k_s: int, k_a: int, rounds: int, ref: float) -> dict:
    """Times the four candidates at one setting and returns a result row."""
    torch.manual_seed(0)
    h = torch.randn(B, D)
    smes = SMESArch(D, T, E, k_s, k_a, layers)
    with torch.no_grad():
        unique = smes(h).routing.num_unique_B.float()
    mean_u, max_u = unique.mean().item(), int(unique.max())
    e_equal = max(1, round(mean_u))
    naive = SMESArch(D, T, E, 0, k_s + k_a, layers)
    with torch.no_grad():
        naive_u = naive(h).routing.num_unique_B.float().mean().item()
    steps = {
        "smes": arch_step(smes, h),
        "mmoe": arch_step(MMoEArch(D, T, E, layers), h),
        "equal": arch_step(MMoEArch(D, T, e_equal, layers), h),
        "naive": arch_step(naive, h),
    }
    med = interleaved_medians(steps, rounds, desc=f"E={E} T={T} Ks={k_s} Ka={k_a}")
    gflops = B * mean_u * expert_flops_per_row(D, layers) / med["smes"] / 1e9
    return {"E": E, "T": T, "k_s": k_s, "k_a": k_a, "mean_u": mean_u, "max_u": max_u, "naive_u": naive_u,
            "e_equal": e_equal, **{f"t_{k}": v for k, v in med.items()}, "frac_ref": gflops / ref}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="sweep E, T, K_s, K_a at the smaller shape")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--in-features", type=int, default=None)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    if args.sweep:
        B, D, layers, rounds = 2048, 256, [256, 128], 3
        grid = list(itertools.product([16, 32, 64, 128], [4, 8, 12], [1, 2], [1, 2]))
    else:
        B, D, layers, rounds = 4096, 1024, [512, 256], 5
        grid = [(64, 8, 2, 1)]
    B, D = args.batch_size or B, args.in_features or D
    layers, rounds = args.expert_layers or layers, args.rounds or rounds
    ref = reference_gflops(B, D, layers[0])
    rows = [compare(B, D, layers, T, E, k_s, k_a, rounds, ref)
            for E, T, k_s, k_a in tqdm(grid, desc="settings")]
    print(f"\nB={B} D={D} experts {'->'.join(map(str, [D, *layers]))} fp32, threads={torch.get_num_threads()}, "
          f"median of {rounds} interleaved rounds; reference matmul {ref:.1f} GFLOP/s\n")
    print("| E | T | K_s | K_a | mean/max \\|U\\| (bound) | naive mean \\|U\\| | SMES s | SMES/MMoE(E) "
          "| SMES/MMoE(E'=mean\\|U\\|) | SMES/naive top-K | SMES GFLOP/s vs matmul |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = min(r["E"], r["k_s"] + r["T"] * r["k_a"])
        print(f"| {r['E']} | {r['T']} | {r['k_s']} | {r['k_a']} | {r['mean_u']:.2f} / {r['max_u']} ({bound}) "
              f"| {r['naive_u']:.2f} | {r['t_smes']:.3f} | {r['t_smes'] / r['t_mmoe']:.3f} "
              f"| {r['t_smes'] / r['t_equal']:.3f} (E'={r['e_equal']}) | {r['t_smes'] / r['t_naive']:.3f} "
              f"| {r['frac_ref']:.2f} |")


if __name__ == "__main__":
    main()
