"""Where an SMES step spends its time, stage by stage, next to the equal-FLOP dense MMoE.

Every stage of ``SMESArch.forward`` (router projection, routing, dispatch plan, gather, experts, combine, the
balancing loss) is timed alone, forward+backward, on the inputs a real step gives it; the dense
MMoE with E' = mean |U| experts is split the same way. All closures run interleaved, round after round, in one
process, and the table prints medians and each stage's share of the whole SMES step.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/profile_arch.py --experts 128
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/profile_arch.py --torch-profiler   # the top aten ops too
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
from collections.abc import Callable

import torch
from _timing import arch_step, expert_flops_per_row, interleaved_medians
from torch.profiler import ProfilerActivity, profile

from smes_rec import MMoEArch, SMESArch
from smes_rec.modules.dispatch import combine, dispatch_rows, plan_dispatch
from smes_rec.modules.routing import multi_gate_load_balance_loss, progressive_route, routing_stats
from smes_rec.utils.memory import keep_freed_memory


def _fwd_bwd(forward: Callable[[], torch.Tensor], module: torch.nn.Module, *leaves: torch.Tensor
             ) -> Callable[[], None]:
    """Forward, then backward with a fixed random upstream gradient; all gradients are dropped every call."""
    upstream = torch.randn_like(forward())

    def step() -> None:
        module.zero_grad(set_to_none=True)
        for leaf in leaves:
            leaf.grad = None
        forward().backward(upstream)

    return step


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def smes_stages(arch: SMESArch, h_BD: torch.Tensor) -> dict[str, Callable[[], None]]:
    """One closure per stage of ``SMESArch.forward``, each fed what the previous stage produced."""
    E, k_s, k_a = arch.num_experts, arch.k_shared, arch.k_adaptive
    with torch.no_grad():
        logits_BTE = arch.gates(h_BD)
        routing = progressive_route(logits_BTE, arch.task_weights_T, k_s, k_a)
        plan = plan_dispatch(routing.ids_BTK, E, arch.max_unique, arch.static_dispatch)
        x_PD = dispatch_rows(h_BD, plan.instance_of_row_P)
        y_PH = arch.experts(x_PD, plan.offsets_E, plan.expert_of_row_P)
    h, logits, x, y, gates = (_leaf(t) for t in (h_BD, logits_BTE, x_PD, y_PH, routing.gates_BTK))
    probs = _leaf(routing.probs_BTE)

    return {
        "router projection (D -> T*E)": _fwd_bwd(lambda: arch.gates(h), arch, h),
        "routing (softmax, stage I + II top-k, gates)": _fwd_bwd(
            lambda: progressive_route(logits, arch.task_weights_T, k_s, k_a).gates_BTK, arch, logits),
        "dispatch plan (dedup, sort by expert)": lambda: plan_dispatch(routing.ids_BTK, E, arch.max_unique,
                                                                       arch.static_dispatch),
        "gather rows": _fwd_bwd(lambda: dispatch_rows(h, plan.instance_of_row_P), arch, h),
        "experts (grouped GEMMs, bias, ReLU)": _fwd_bwd(
            lambda: arch.experts(x, plan.offsets_E, plan.expert_of_row_P), arch, x),
        "combine (gated sum per task)": _fwd_bwd(lambda: combine(y, plan.row_BTK, gates), arch, y, gates),
        "balancing loss": _fwd_bwd(lambda: multi_gate_load_balance_loss(probs, routing.ids_BTK, E), arch, probs),
    }


def mmoe_stages(arch: MMoEArch, h_BD: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The dense model split the same way: gates, softmax, every expert on every row, the mixture."""
    with torch.no_grad():
        logits_BTE = arch.gates(h_BD)
        y_EBH = arch.experts.forward_all(h_BD)
    h, logits, y = (_leaf(t) for t in (h_BD, logits_BTE, y_EBH))
    probs = _leaf(torch.softmax(logits_BTE, dim=-1))
    return {
        "router projection (D -> T*E)": _fwd_bwd(lambda: arch.gates(h), arch, h),
        "routing (softmax, stage I + II top-k, gates)": _fwd_bwd(lambda: torch.softmax(logits, dim=-1), arch, logits),
        "experts (grouped GEMMs, bias, ReLU)": _fwd_bwd(lambda: arch.experts.forward_all(h), arch, h),
        "combine (gated sum per task)": _fwd_bwd(lambda: torch.einsum("bte,ebh->tbh", probs, y), arch, probs, y),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--in-features", type=int, default=256)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--k-shared", type=int, default=2)
    parser.add_argument("--k-adaptive", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--torch-profiler", action="store_true", help="also print torch.profiler's top ops")
    args = parser.parse_args()
    keep_freed_memory()  # as the apps do: steps reuse their buffers' pages
    B, D, T, E, layers = args.batch_size, args.in_features, args.tasks, args.experts, args.expert_layers

    torch.manual_seed(0)
    h_BD = torch.randn(B, D)
    smes = SMESArch(D, T, num_experts=E, k_shared=args.k_shared, k_adaptive=args.k_adaptive, expert_layers=layers)
    with torch.no_grad():
        mean_u = routing_stats(smes(h_BD).routing.ids_BTK, E).num_unique_B.float().mean().item()
    e_equal = max(1, round(mean_u))
    mmoe = MMoEArch(D, T, num_experts=e_equal, expert_layers=layers)

    s_stages, m_stages = smes_stages(smes, h_BD), mmoe_stages(mmoe, h_BD)
    closures = {"smes step": arch_step(smes, h_BD), "mmoe step": arch_step(mmoe, h_BD),
                **{f"smes {k}": v for k, v in s_stages.items()}, **{f"mmoe {k}": v for k, v in m_stages.items()}}
    med = interleaved_medians(closures, args.rounds, desc="rounds")

    expert_flops = B * mean_u * expert_flops_per_row(D, layers)
    router_flops = 6 * B * D * T * E
    print(f"\nB={B} D={D} experts {'->'.join(map(str, [D, *layers]))} T={T} E={E} K_s={args.k_shared} "
          f"K_a={args.k_adaptive} fp32, threads={torch.get_num_threads()}, median of {args.rounds} interleaved "
          f"rounds; mean |U| = {mean_u:.2f}, equal-FLOP MMoE E'={e_equal}")
    print(f"router FLOPs / expert FLOPs (forward+backward): SMES {router_flops / expert_flops:.2f}, "
          f"MMoE(E'={e_equal}) {6 * B * D * T * e_equal / (B * e_equal * expert_flops_per_row(D, layers)):.2f}\n")
    smes_step = med["smes step"]
    print(f"| stage (forward+backward) | SMES ms | share of SMES step | MMoE(E'={e_equal}) ms |")
    print("|---|---|---|---|")
    for stage in s_stages:
        dense = f"{med['mmoe ' + stage] * 1e3:.1f}" if stage in m_stages else "-"
        print(f"| {stage} | {med['smes ' + stage] * 1e3:.1f} | {med['smes ' + stage] / smes_step:.0%} | {dense} |")
    s_sum = sum(med[f"smes {k}"] for k in s_stages)
    m_sum = sum(med[f"mmoe {k}"] for k in m_stages)
    print(f"| sum of stages | {s_sum * 1e3:.1f} | {s_sum / smes_step:.0%} | {m_sum * 1e3:.1f} |")
    print(f"| whole step | {smes_step * 1e3:.1f} | 100% | {med['mmoe step'] * 1e3:.1f} |")
    print(f"\nSMES / MMoE(E'={e_equal}) whole step: {smes_step / med['mmoe step']:.2f}")

    if args.torch_profiler:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                closures["smes step"]()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
