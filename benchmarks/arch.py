"""Forward+backward time of SMESArch against dense MMoE (same E), equal-FLOP MMoE and naive per-task top-K.

Candidates run interleaved, round after round, in one process; the tables print medians and ratios (compare
ratios, not absolute times: these machines are noisy). The default is the headline CPU shape; ``--sweep`` sweeps
E x T x K_s x K_a at a smaller shape so the whole grid runs in minutes on 2 cores; ``--gpu`` runs the GPU goal's
shape (B = 32768, E = 32, K = K_s + K_a = 4, several task counts and splits of K) on CUDA with bf16 autocast.
A second table gives every candidate's parameters and inference FLOPs per instance (``arch_cost``).
``--baselines`` instead times every arch of the paper's comparison (SMES, MMoE, OMoE, PLE, SharedBottom, HoME,
MoME, RankMixer, sparse RankMixer) at one setting, each with its parameter and FLOP count.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py --sweep
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/arch.py --baselines
    .venv/bin/python benchmarks/arch.py --gpu
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import dataclasses
import itertools

import torch
from _timing import arch_step, expert_flops_per_row, interleaved_medians
from tqdm import tqdm

from smes_rec import MMoEArch, SMESArch, arch_cost
from smes_rec.models.factory import ModelConfig, build_arch
from smes_rec.modules.dispatch import dispatch_rows, plan_dispatch
from smes_rec.modules.experts import grouped_matmul
from smes_rec.modules.routing import progressive_route, routing_stats
from smes_rec.utils.memory import keep_freed_memory


def reference_gflops(batch: int, in_features: int, out_features: int, device: torch.device, dtype: torch.dtype,
                     rounds: int = 3) -> float:
    """FLOP rate of one plain matrix product of the experts' first-layer shape (forward+backward)."""
    x = torch.randn(batch, in_features, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(in_features, out_features, device=device, dtype=dtype, requires_grad=True)

    def step() -> None:
        x.grad = w.grad = None
        (x @ w).sum().backward()

    seconds = interleaved_medians({"mm": step}, rounds, desc="reference", device=device)["mm"]
    return 6 * batch * in_features * out_features / seconds / 1e9


def grouped_gemm_gflops(arch: SMESArch, h: torch.Tensor, dtype: torch.dtype, rounds: int) -> float:
    """Forward FLOP rate of the first expert layer's grouped GEMM alone, on the rows SMES dispatches for ``h``."""
    with torch.no_grad():
        routing = progressive_route(arch.gates(h), arch.task_weights_T, arch.k_shared, arch.k_adaptive)
        plan = plan_dispatch(routing.ids_BTK, arch.num_experts, arch.max_unique, arch.static_dispatch)
        x_PD = dispatch_rows(h, plan.instance_of_row_P).to(dtype)
    w_EDH = arch.experts.weights[0].detach().to(dtype)
    rows = int(plan.offsets_E[-1])  # real rows only: static-mode padding is not work
    seconds = interleaved_medians({"gemm": lambda: grouped_matmul(x_PD, w_EDH, plan.offsets_E)}, rounds,
                                  desc="grouped GEMM", device=h.device)["gemm"]
    return 2 * rows * w_EDH.size(1) * w_EDH.size(2) / seconds / 1e9


def compare(B: int, D: int, layers: list[int], T: int, E: int, k_s: int, k_a: int, rounds: int, ref: float,
            device: torch.device) -> dict:
    """Times the four candidates at one setting and returns a result row."""
    torch.manual_seed(0)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    gemm_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    h = torch.randn(B, D, device=device)
    smes = SMESArch(D, T, num_experts=E, k_shared=k_s, k_adaptive=k_a, expert_layers=layers).to(device)
    with torch.no_grad():
        unique = routing_stats(smes(h).routing.ids_BTK, E).num_unique_B.float()
    mean_u, max_u = unique.mean().item(), int(unique.max())
    e_equal = max(1, round(mean_u))
    naive = SMESArch(D, T, num_experts=E, k_shared=0, k_adaptive=k_s + k_a, expert_layers=layers).to(device)
    with torch.no_grad():
        naive_u = routing_stats(naive(h).routing.ids_BTK, E).num_unique_B.float().mean().item()
    archs = {"smes": smes, "mmoe": MMoEArch(D, T, num_experts=E, expert_layers=layers).to(device),
             "equal": MMoEArch(D, T, num_experts=e_equal, expert_layers=layers).to(device), "naive": naive}
    steps = {name: arch_step(arch, h, autocast) for name, arch in archs.items()}
    med = interleaved_medians(steps, rounds, desc=f"E={E} T={T} Ks={k_s} Ka={k_a}", device=device)
    gflops = B * mean_u * expert_flops_per_row(D, layers) / med["smes"] / 1e9
    costs = {name: arch_cost(arch, D, batch_size=min(B, 1024)) for name, arch in archs.items()}
    return {"E": E, "T": T, "k_s": k_s, "k_a": k_a, "mean_u": mean_u, "max_u": max_u, "naive_u": naive_u,
            "e_equal": e_equal, **{f"t_{k}": v for k, v in med.items()}, "frac_ref": gflops / ref,
            "gemm_gflops": grouped_gemm_gflops(smes, h, gemm_dtype, rounds), "costs": costs}


BASELINES = {
    "smes": {}, "mmoe": {}, "omoe": {}, "ple": {}, "shared_bottom": {}, "home": {}, "mome": {}, "rankmixer": {},
    "rankmixer_sparse": {"arch": "rankmixer", "rankmixer_sparse": True},
}


def _rankmixer_dim_for(base: ModelConfig, D: int, T: int, target: torch.nn.Module) -> int:
    """The dense RankMixer token width (a multiple of N) whose parameter count is closest to ``target``'s."""
    budget = sum(p.numel() for p in target.parameters())
    N, best = base.rankmixer_tokens, (None, 0)
    for dim in range(N, 1 << 14, N):
        arch = build_arch(dataclasses.replace(base, arch="rankmixer", rankmixer_dim=dim), D, T)
        gap = abs(sum(p.numel() for p in arch.parameters()) - budget)
        if best[0] is not None and gap > best[0]:
            break
        best = (gap, dim)
    return best[1]


def compare_baselines(B: int, D: int, layers: list[int], T: int, E: int, k_s: int, k_a: int, rounds: int,
                      device: torch.device) -> None:
    """Times every arch of the paper's comparison at one setting and prints its cost next to its step time."""
    torch.manual_seed(0)
    h = torch.randn(B, D, device=device)
    base = ModelConfig(num_experts=E, k_shared=k_s, k_adaptive=k_a, expert_layers=tuple(layers), rankmixer_tokens=4)
    mmoe = MMoEArch(D, T, num_experts=E, expert_layers=layers)
    base = dataclasses.replace(base, rankmixer_dim=_rankmixer_dim_for(base, D, T, mmoe))
    categories = [t % 2 for t in range(T)]  # two HoME categories, alternating
    archs = {name: build_arch(dataclasses.replace(base, **{"arch": name, **kw}), D, T, categories).to(device)
             for name, kw in BASELINES.items()}
    costs = {name: arch_cost(arch, D, batch_size=min(B, 1024)) for name, arch in archs.items()}
    med = interleaved_medians({name: arch_step(arch, h) for name, arch in archs.items()}, rounds,
                              desc="baselines", device=device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, threads={torch.get_num_threads()}"
    print(f"\nB={B} D={D} T={T} expert layers {layers}, E={E} (SMES K_s={k_s} K_a={k_a}), RankMixer N=4 "
          f"D={base.rankmixer_dim} (the width whose dense parameters come closest to MMoE's; the sparse variant has "
          f"J={base.rankmixer_experts} experts per token); fp32, {where}, median of {rounds} interleaved rounds; "
          "FLOPs: inference forward matrix products per instance (arch_cost)\n")
    print("| arch | params | active params | MFLOPs/instance | s/step (fwd+bwd) | step / SMES step |")
    print("|---|---|---|---|---|---|")
    for name, c in costs.items():
        print(f"| {name} | {c.total_params:,} | {c.active_params:,.0f} | {c.flops_per_instance / 1e6:.4f} "
              f"| {med[name]:.4f} | {med[name] / med['smes']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sweep", action="store_true", help="sweep E, T, K_s, K_a at the smaller shape")
    mode.add_argument("--gpu", action="store_true", help="the GPU goal's shape on CUDA, bf16 experts")
    mode.add_argument("--baselines", action="store_true",
                      help="every arch of the paper's comparison at one setting (the first --grid, or E=16 T=4 "
                           "K_s=2 K_a=1), with parameters and FLOPs")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--in-features", type=int, default=None)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--grid", type=int, nargs=4, action="append", metavar=("E", "T", "K_S", "K_A"),
                        help="time this setting instead of the mode's grid (repeatable)")
    args = parser.parse_args()
    keep_freed_memory()  # as the apps do: steps reuse their buffers' pages
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.sweep:
        B, D, layers, rounds = 2048, 256, [256, 128], 3
        grid = list(itertools.product([16, 32, 64, 128], [4, 8, 12], [1, 2], [1, 2]))
    elif args.gpu:
        # K = 4 experts per task; |U| <= K_s + T*K_a, so the task count and the split of K set the FLOP floor.
        B, D, layers, rounds = 32768, 1024, [512, 256], 10
        grid = [(32, 8, 4, 0), (32, 8, 3, 1), (32, 8, 2, 2), (32, 4, 3, 1), (32, 2, 2, 2)]
    elif args.baselines:
        B, D, layers, rounds = 1024, 256, [128, 64], 3
        grid = [(16, 4, 2, 1)]
    else:
        B, D, layers, rounds = 4096, 1024, [512, 256], 5
        grid = [(64, 8, 2, 1)]
    B, D = args.batch_size or B, args.in_features or D
    layers, rounds, grid = args.expert_layers or layers, args.rounds or rounds, args.grid or grid
    if args.baselines:
        E, T, k_s, k_a = grid[0]
        compare_baselines(B, D, layers, T, E, k_s, k_a, rounds, device)
        return
    precision = "bf16 experts (autocast), fp32 router" if device.type == "cuda" else "fp32"
    ref = reference_gflops(B, D, layers[0], device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    rows = [compare(B, D, layers, T, E, k_s, k_a, rounds, ref, device)
            for E, T, k_s, k_a in tqdm(grid, desc="settings")]
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, threads={torch.get_num_threads()}"
    print(f"\nB={B} D={D} experts {'->'.join(map(str, [D, *layers]))} {precision}, {where}, median of {rounds} "
          f"interleaved rounds; reference matmul {ref:.1f} GFLOP/s\n")
    print("| E | T | K_s | K_a | mean/max \\|U\\| (bound) | FLOP floor mean\\|U\\|/E | naive mean \\|U\\| | SMES s "
          "| SMES/MMoE(E) | SMES/MMoE(E'=mean\\|U\\|) | SMES/naive top-K | SMES GFLOP/s vs matmul "
          "| grouped GEMM GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = min(r["E"], r["k_s"] + r["T"] * r["k_a"])
        print(f"| {r['E']} | {r['T']} | {r['k_s']} | {r['k_a']} | {r['mean_u']:.2f} / {r['max_u']} ({bound}) "
              f"| {r['mean_u'] / r['E']:.3f} | {r['naive_u']:.2f} | {r['t_smes']:.4f} "
              f"| {r['t_smes'] / r['t_mmoe']:.3f} | {r['t_smes'] / r['t_equal']:.3f} (E'={r['e_equal']}) "
              f"| {r['t_smes'] / r['t_naive']:.3f} | {r['frac_ref']:.2f} | {r['gemm_gflops']:.1f} |")
    print("\nParameters (active: those one instance uses) and inference FLOPs per instance (arch_cost)\n")
    print("| E | T | K_s | K_a | SMES params (active) | naive top-K params (active) | SMES MFLOPs | MMoE(E) MFLOPs "
          "| MMoE(E') MFLOPs | naive top-K MFLOPs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["costs"]
        print(f"| {r['E']} | {r['T']} | {r['k_s']} | {r['k_a']} "
              f"| {c['smes'].total_params:,} ({c['smes'].active_params:,.0f}) "
              f"| {c['naive'].total_params:,} ({c['naive'].active_params:,.0f}) "
              + " ".join(f"| {c[k].flops_per_instance / 1e6:.4f}" for k in ("smes", "mmoe", "equal", "naive"))
              + " |")


if __name__ == "__main__":
    main()
