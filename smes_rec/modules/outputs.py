"""The output type shared by SMES and every baseline arch.

No ``from __future__ import annotations`` here: TorchScript resolves the NamedTuple's field types, and a
string annotation (``ForwardRef``) inside a NamedTuple is not supported by it.
"""


from typing import NamedTuple

import torch

from smes_rec.modules.routing import Routing

__all__ = ["ArchOutput", "dense_routing"]


class ArchOutput(NamedTuple):
    """What a multi-task arch returns.

    Attributes:
        task_reprs: ``[T, B, H]`` one representation per task and instance.
        aux_loss: Scalar auxiliary loss, unweighted (SMES: the load-balancing loss; dense baselines: 0).
        routing: The routing decision (expert ids, gates, probabilities); dense archs report every expert as
            selected. Statistics are derived from it by ``modules.routing.routing_stats`` where they are reported.
    """

    task_reprs: torch.Tensor
    aux_loss: torch.Tensor
    routing: Routing


def dense_routing(probs_BTE: torch.Tensor) -> Routing:
    """The routing of a dense mixture: every task selects every expert, with its softmax probability as the gate.

    The ids are a broadcast view of ``arange(E)``: nothing of size ``B x T x E`` is computed.
    """
    B, T, E = probs_BTE.shape
    # arange(E) built from a tensor (not a device argument) so that fx can trace it.
    ids_E = torch.ones_like(probs_BTE[0, 0], dtype=torch.int64).cumsum(0) - 1
    return Routing(ids_BTK=ids_E.expand(B, T, E), gates_BTK=probs_BTE, probs_BTE=probs_BTE)
