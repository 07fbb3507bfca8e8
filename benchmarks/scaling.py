"""Time per forward+backward step as the expert pool grows (E = 16 -> 256) at fixed K_s, K_a.

SMES runs at most K_s + T*K_a experts per instance whatever E is (only the gate grows), so its step time should
stay nearly flat; dense MMoE runs all E and grows linearly. Prints a table and writes a plot.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/scaling.py --plot docs/scaling.png
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _timing import arch_step, interleaved_medians
from tqdm import tqdm

from smes_rec import MMoEArch, SMESArch, arch_cost
from smes_rec.modules.routing import routing_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--in-features", type=int, default=256)
    parser.add_argument("--expert-layers", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--k-shared", type=int, default=2)
    parser.add_argument("--k-adaptive", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plot", default=None, help="write the plot (PNG) here")
    args = parser.parse_args()
    B, D, T, layers = args.batch_size, args.in_features, args.tasks, args.expert_layers
    torch.manual_seed(0)
    h = torch.randn(B, D)
    rows = []
    for E in tqdm(args.experts, desc="experts"):
        smes = SMESArch(D, T, num_experts=E, k_shared=args.k_shared, k_adaptive=args.k_adaptive, expert_layers=layers)
        mmoe = MMoEArch(D, T, num_experts=E, expert_layers=layers)
        med = interleaved_medians({"smes": arch_step(smes, h), "mmoe": arch_step(mmoe, h)},
                                  args.rounds, desc=f"E={E}")
        with torch.no_grad():
            mean_u = routing_stats(smes(h).routing.ids_BTK, E).num_unique_B.float().mean().item()
        flops = [arch_cost(a, D, batch_size=min(B, 1024)).flops_per_instance / 1e6 for a in (smes, mmoe)]
        rows.append((E, mean_u, med["smes"], med["mmoe"], *flops))

    print(f"\nB={B} D={D} experts {'->'.join(map(str, [D, *layers]))} T={T} K_s={args.k_shared} "
          f"K_a={args.k_adaptive} fp32, threads={torch.get_num_threads()}, median of {args.rounds} rounds\n")
    print("| E | mean \\|U\\| | SMES s/step | MMoE s/step | SMES / MMoE | SMES vs E=first | MMoE vs E=first "
          "| SMES MFLOPs/instance | MMoE MFLOPs/instance |")
    print("|---|---|---|---|---|---|---|---|---|")
    for E, mean_u, t_s, t_m, f_s, f_m in rows:
        print(f"| {E} | {mean_u:.2f} | {t_s:.3f} | {t_m:.3f} | {t_s / t_m:.3f} | {t_s / rows[0][2]:.2f}x "
              f"| {t_m / rows[0][3]:.2f}x | {f_s:.4f} | {f_m:.4f} |")
    if args.plot:
        fig, ax = plt.subplots(figsize=(6, 4))
        es = [r[0] for r in rows]
        ax.plot(es, [r[2] for r in rows], "o-", label=f"SMES (K_s={args.k_shared}, K_a={args.k_adaptive})")
        ax.plot(es, [r[3] for r in rows], "s-", label="MMoE (all E experts)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(es, [str(e) for e in es])
        ax.set_xlabel("experts in the pool (E)")
        ax.set_ylabel("seconds per forward+backward")
        ax.set_title(f"Step time vs pool size (B={B}, T={T}, CPU fp32)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
