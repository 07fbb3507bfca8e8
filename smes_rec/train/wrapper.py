"""The train wrapper: ``batch -> (loss, detached outputs)``, identical in train and eval.

Legend: B instances, T tasks, E experts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from smes_rec.data.batch import Batch
from smes_rec.models.ranker import Ranker
from smes_rec.modules.routing import Routing

__all__ = ["StepOutput", "TrainWrapper"]


class StepOutput(NamedTuple):
    """Detached per-step results: everything metrics, logging and evaluation need.

    Attributes:
        task_losses_T: Weighted BCE per task (mean over the batch).
        aux_loss: The unweighted auxiliary (load-balancing) loss.
        probs_TB: Predicted probabilities.
        labels_TB: Labels.
        weights_TB: Example weights.
        group_ids_B: Group ids (users) for GAUC.
        routing: The arch's routing decision (detached): ids, gates, probabilities. Its statistics are computed by
            ``modules.routing.routing_stats`` where they are reported (training logs, evaluation), not per step.
    """

    task_losses_T: torch.Tensor
    aux_loss: torch.Tensor
    probs_TB: torch.Tensor
    labels_TB: torch.Tensor
    weights_TB: torch.Tensor
    group_ids_B: torch.Tensor
    routing: Routing


class TrainWrapper(nn.Module):
    """``L = sum_t lambda_t * BCE_t + beta * L_aux`` over a :class:`~smes_rec.data.batch.Batch`.

    Args:
        model: The ranker.
        task_loss_weights: lambda_t, one per task.
        aux_loss_weight: beta.
    """

    task_loss_weights_T: torch.Tensor

    def __init__(self, model: Ranker, task_loss_weights: Sequence[float], aux_loss_weight: float):
        super().__init__()
        self.model = model
        self.aux_loss_weight = aux_loss_weight
        self.register_buffer("task_loss_weights_T", torch.tensor(task_loss_weights, dtype=torch.float32),
                             persistent=False)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, StepOutput]:
        """Returns the loss to back-propagate and a :class:`StepOutput` of detached tensors."""
        out = self.model(batch.dense_features, batch.sparse_features)
        logits_TB = out.logits.float()
        bce_TB = F.binary_cross_entropy_with_logits(logits_TB, batch.labels, reduction="none")
        task_losses_T = (bce_TB * batch.weights).mean(dim=1)
        loss = (task_losses_T * self.task_loss_weights_T).sum() + self.aux_loss_weight * out.aux_loss
        r = out.routing
        return loss, StepOutput(
            task_losses_T=task_losses_T.detach(),
            aux_loss=out.aux_loss.detach(),
            probs_TB=torch.sigmoid(logits_TB.detach()),
            labels_TB=batch.labels,
            weights_TB=batch.weights,
            group_ids_B=batch.group_ids,
            routing=Routing(r.ids_BTK.detach(), r.gates_BTK.detach(), r.probs_BTE.detach()),
        )
