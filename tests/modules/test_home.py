"""HoMEArch: a brute-force reference, the category mask, feature and self gates, gradients, the serving route,
construction errors and the default task categories."""

from __future__ import annotations

import pytest
import torch

from smes_rec import HoMEArch, HoMEExperts
from smes_rec.models.factory import ModelConfig, build_arch, default_task_categories
from smes_rec.modules.home import NormSwishExperts
from tests.modules.contract import arch_stats, assert_contract, assert_grads, assert_serving_route

B, D = 16, 6
CATEGORIES = [0, 1, 1, 0, 1]  # T = 5 tasks in C = 2 categories
LAYERS = [8, 4]


def _expert(bank: NormSwishExperts, g: int, x_BD: torch.Tensor) -> torch.Tensor:
    """Expert g alone, with explicit batch-norm statistics (training mode) and Swish."""
    gate = 2 * torch.sigmoid(x_BD @ bank.lora_down[g] @ bank.lora_up[g])
    h = x_BD * gate
    for w, b, norm in zip(bank.weights, bank.biases, bank.norms, strict=True):
        z = h @ w[g] + b[g]
        H = z.size(1)
        z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + norm.eps)
        z = z * norm.weight[g * H:(g + 1) * H] + norm.bias[g * H:(g + 1) * H]
        h = z * torch.sigmoid(z)
    return h


def _reference(arch: HoMEArch, h: torch.Tensor, categories: list[int]) -> torch.Tensor:
    x = arch.experts_spec
    S, P, Q, Rc, Rt = x.meta_shared, x.meta_per_category, x.task_shared, x.task_per_category, x.task_specific
    C, T = max(categories) + 1, len(categories)
    meta = [_expert(arch.meta_experts, g, h) for g in range(S + C * P)]
    cat_logits = arch.category_gates(h)
    m = []
    for c in range(C):
        visible = list(range(S)) + [S + c * P + j for j in range(P)]
        probs = torch.softmax(cat_logits[:, c], -1)
        m.append(sum(probs[:, i:i + 1] * meta[e] for i, e in enumerate(visible)))
    shared_probs = torch.softmax(arch.shared_gate(h)[:, 0], -1)
    m_sh = sum(shared_probs[:, e:e + 1] * meta[e] for e in range(S))
    out = []
    for t, c in enumerate(categories):
        u = torch.cat([m_sh, m[c]], -1)
        glob = [_expert(arch.global_experts, j, m_sh) for j in range(Q)]
        cat_exp = [_expert(arch.owned_experts, c * Rc + j, u) for j in range(Rc)]
        own = [_expert(arch.owned_experts, C * Rc + t * Rt + j, u) for j in range(Rt)]
        w_t = arch.task_gates.proj.weight.view(T, -1, u.size(1))[t]
        b_t = arch.task_gates.proj.bias.view(T, -1)[t]
        g = torch.softmax(u @ w_t.T + b_t, -1)
        sw = arch.self_gates.proj.weight.view(T, -1, u.size(1))[t]
        sb = arch.self_gates.proj.bias.view(T, -1)[t]
        s = torch.sigmoid(u @ sw.T + sb) if Rt == 1 else torch.softmax(u @ sw.T + sb, -1)
        experts = glob + cat_exp + own
        z = sum(g[:, i:i + 1] * e for i, e in enumerate(experts)) + sum(s[:, j:j + 1] * own[j] for j in range(Rt))
        out.append(z)
    return torch.stack(out)


@pytest.mark.parametrize("task_specific", [1, 2])
def test_home_matches_brute_force_reference(task_specific: int) -> None:
    torch.manual_seed(0)
    arch = HoMEArch(D, CATEGORIES, expert_layers=LAYERS, experts=HoMEExperts(2, 1, 1, 2, task_specific, lora_rank=3))
    h = torch.randn(B, D)
    out = arch(h)
    E = 1 + 2 * 2 + 5 * task_specific
    assert_contract(out, len(CATEGORIES), B, LAYERS[-1], E)
    torch.testing.assert_close(out.task_reprs, _reference(arch, h, CATEGORIES), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.routing.gates_BTK.sum(-1), torch.ones(B, len(CATEGORIES)))
    assert out.aux_loss.item() == 0.0 and (arch_stats(out).num_unique_B == E).all()  # dense: every expert runs


def test_feature_gate_is_two_sigmoid_of_a_low_rank_map() -> None:
    torch.manual_seed(1)
    bank = NormSwishExperts(3, D, [4], lora_rank=2)
    torch.nn.init.normal_(bank.lora_up)  # far from the near-1 initialisation
    x = torch.randn(3, B, D)
    gate = bank.feature_gate(x)
    for g in range(3):
        torch.testing.assert_close(gate[g], 2 * torch.sigmoid(x[g] @ bank.lora_down[g] @ bank.lora_up[g]))
    assert (gate > 0).all() and (gate < 2).all() and gate.max() > 1.2 and gate.min() < 0.8
    # BatchNorm per expert and unit, then Swish: expert outputs have batch mean ~ beta-free Swish statistics.
    z = bank(x)
    assert z.shape == (3, B, 4) and (z >= -0.2785).all()  # Swish's minimum is about -0.2785


def _perturb_category(arch: HoMEArch, category: int, categories: list[int]) -> None:
    """Adds noise to every parameter slice of the meta and task experts that category ``category`` owns."""
    x, C = arch.experts_spec, max(categories) + 1
    meta = [x.meta_shared + category * x.meta_per_category + j for j in range(x.meta_per_category)]
    owned = [category * x.task_per_category + j for j in range(x.task_per_category)]
    owned += [C * x.task_per_category + t * x.task_specific + j
              for t, c in enumerate(categories) if c == category for j in range(x.task_specific)]
    with torch.no_grad():
        for bank, ids in ((arch.meta_experts, meta), (arch.owned_experts, owned)):
            for p in [*bank.weights, *bank.biases, bank.lora_down, bank.lora_up]:
                p[ids] += torch.randn_like(p[ids])
            for norm in bank.norms:
                H = norm.weight.numel() // bank.num_experts
                for g in ids:
                    norm.weight[g * H:(g + 1) * H] += 1.0
                    norm.bias[g * H:(g + 1) * H] += 1.0


def test_category_mask_blocks_other_categories_experts() -> None:
    torch.manual_seed(2)
    arch = HoMEArch(D, CATEGORIES, expert_layers=LAYERS, experts=HoMEExperts(2, 2, 1, 1, 1, lora_rank=2))
    h = torch.randn(B, D)
    before = arch(h).task_reprs.detach()
    _perturb_category(arch, 1, CATEGORIES)
    after = arch(h).task_reprs.detach()
    cat0 = [t for t, c in enumerate(CATEGORIES) if c == 0]
    cat1 = [t for t, c in enumerate(CATEGORIES) if c == 1]
    torch.testing.assert_close(after[cat0], before[cat0], rtol=0, atol=0)
    assert not torch.allclose(after[cat1], before[cat1])


def test_cgc_style_shared_meta_gate_leaks_through_the_shared_representation() -> None:
    torch.manual_seed(3)
    arch = HoMEArch(D, CATEGORIES, expert_layers=LAYERS,
                    experts=HoMEExperts(2, 2, 1, 1, 1, lora_rank=2, shared_meta_sees_all=True))
    h = torch.randn(B, D)
    before = arch(h).task_reprs.detach()
    _perturb_category(arch, 1, CATEGORIES)
    after = arch(h).task_reprs.detach()
    assert not torch.allclose(after[0], before[0])  # category 0 now sees category 1 through m_sh


def test_home_gradients_and_serving_route() -> None:
    torch.manual_seed(4)
    arch = HoMEArch(D, CATEGORIES, expert_layers=LAYERS, experts=HoMEExperts(2, 1, 1, 1, 2, lora_rank=2))
    assert_grads(arch, arch(torch.randn(B, D)))
    single = HoMEArch(D, CATEGORIES, expert_layers=LAYERS, experts=HoMEExperts(1, 1, 1, 1, 1, lora_rank=2))
    assert single.shared_gate is None  # one shared meta expert is m_sh itself, no constant gate
    assert_grads(single, single(torch.randn(B, D)))
    assert_serving_route(arch, torch.randn(B, D))


@pytest.mark.parametrize(("categories", "kwargs", "message"), [
    ([0, 2], {}, "every category"),
    ([], {}, "at least one task"),
    ([0, 1], {"meta_shared": 0, "task_shared": 1}, "meta_shared"),
    ([0, 1], {"task_specific": 0}, "task_specific"),
])
def test_home_rejects_bad_settings(categories: list[int], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HoMEArch(D, categories, expert_layers=LAYERS, experts=HoMEExperts(**kwargs))


def test_default_categories_split_watch_time_from_interaction() -> None:
    kuairand = ["is_click", "long_view", "is_like", "is_profile_enter", "is_comment", "is_follow", "is_forward",
                "is_hate"]
    assert default_task_categories(kuairand) == (1, 0, 1, 1, 1, 1, 1, 1)
    assert default_task_categories(["play_time_ms", "click", "effective_view"]) == (0, 1, 0)
    assert default_task_categories(["click", "like"]) == (0, 0)  # one category
    arch = build_arch(ModelConfig(arch="home", expert_layers=(4,)), D, 3, task_categories=(1, 0, 1))
    assert arch.category_of_task_T.tolist() == [1, 0, 1]
    explicit = build_arch(ModelConfig(arch="home", expert_layers=(4,), home_task_categories=(0, 0, 1)), D, 3,
                          task_categories=(1, 0, 1))
    assert explicit.category_of_task_T.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="home_task_categories"):
        build_arch(ModelConfig(arch="home"), D, 3)
