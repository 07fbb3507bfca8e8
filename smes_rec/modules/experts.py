"""Banks of independent MLPs with stacked weights: the experts of every arch, and the task towers.

Legend:
    G   groups (experts, or tasks for the towers)
    P   rows sorted by group (the dispatched (instance, expert) pairs)
    B   instances
    D   input features, H output features of the last layer
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupedMLP", "grouped_matmul", "grouped_mlp"]


def grouped_matmul(x_PD: torch.Tensor, w_GDF: torch.Tensor, offsets_G: torch.Tensor) -> torch.Tensor:
    """``x[rows of g] @ w[g]`` for every group g: one grouped GEMM when the rows are 16-byte aligned.

    Args:
        x_PD: Rows sorted by group.
        w_GDF: Per-group weights ``[G, D, F]``.
        offsets_G: int32 cumulative row counts per group; rows past ``offsets_G[-1]`` are padding (zeros, or left
            to the kernel).

    Returns:
        ``[P, F]``.
    """
    row_bytes = 16 // x_PD.element_size()
    if x_PD.size(1) % row_bytes == 0 and w_GDF.size(2) % row_bytes == 0:
        return torch._grouped_mm(x_PD, w_GDF, offs=offsets_G)
    # The grouped kernel needs 16-byte-aligned rows; other widths take a per-group loop (a host read on GPU).
    ends: list[int] = offsets_G.tolist()
    outs: list[torch.Tensor] = []
    start = 0
    for g, end in enumerate(ends):
        outs.append(x_PD[start:end] @ w_GDF[g])
        start = end
    outs.append(x_PD.new_zeros(x_PD.size(0) - start, w_GDF.size(2)))  # padding rows, if any
    return torch.cat(outs)


def grouped_mlp(
    x_PD: torch.Tensor,
    offsets_G: torch.Tensor,
    group_of_row_P: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    activate_last: bool,
) -> torch.Tensor:
    """Runs group g's MLP on its contiguous block of rows, one grouped GEMM per layer.

    Rows must be sorted by group; ``offsets_G[g]`` is the end (exclusive) of group g's rows, so rows past
    ``offsets_G[-1]`` are padding that no group owns. On CUDA the GEMMs run in bfloat16 (the grouped-GEMM kernel's
    type); on CPU in the input's dtype. Layer widths that are multiples of 8 keep every layer on the grouped kernel.

    Args:
        x_PD: Inputs, sorted by group.
        offsets_G: int32 cumulative row counts per group.
        group_of_row_P: int64 group of every row (selects the bias); G marks a padding row.
        weights: Per layer, ``[G, d_in, d_out]``.
        biases: Per layer, ``[G, d_out]``.
        activate_last: Apply ReLU after the last layer too.

    Returns:
        ``[P, H]`` outputs in ``x_PD``'s dtype.
    """
    compute_dtype = torch.bfloat16 if x_PD.is_cuda else x_PD.dtype
    out_dtype = x_PD.dtype
    h = x_PD
    last = len(weights) - 1
    if len(biases) != len(weights):
        raise ValueError(f"{len(weights)} weights but {len(biases)} biases")
    for i in range(len(weights)):  # indexed, not zipped: TorchScript compiles this function for serving
        w, b = weights[i], biases[i]
        h = grouped_matmul(h.to(compute_dtype), w.to(compute_dtype), offsets_G).to(out_dtype)
        # Padding rows (group G) read a zero bias, so whatever the kernel leaves in them never reaches a gradient.
        h = h + torch.cat([b, b.new_zeros(1, b.size(1))]).index_select(0, group_of_row_P)
        if i < last or activate_last:
            h = F.relu(h)
    return h


torch.fx.wrap("grouped_mlp")  # a leaf in fx graphs: its kernel takes data-dependent group sizes


class GroupedMLP(nn.Module):
    """G independent MLPs of identical shape whose weights are stacked ``[G, d_in, d_out]``.

    Args:
        num_groups: G.
        in_features: D.
        layer_widths: The output width of every layer; the last is H.
        activate_last: Apply ReLU after the last layer (True for experts, False for towers producing logits).
    """

    def __init__(self, num_groups: int, in_features: int, layer_widths: Sequence[int], *, activate_last: bool = True):
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}")
        if len(layer_widths) == 0:
            raise ValueError("layer_widths must list at least one layer width")
        if any(w < 1 for w in layer_widths):
            raise ValueError(f"layer_widths must be positive, got {list(layer_widths)}")
        self.num_groups = num_groups
        self.in_features = in_features
        self.out_features = layer_widths[-1]
        self.activate_last = activate_last
        dims = [in_features, *layer_widths]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(num_groups, d_in, d_out)) for d_in, d_out in pairwise(dims)
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(num_groups, d_out)) for d_out in dims[1:])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The distribution of ``nn.Linear``'s default initialisation, independently per group."""
        for w, b in zip(self.weights, self.biases, strict=True):
            bound = 1.0 / math.sqrt(w.size(1))
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def store_output_major(self) -> None:
        """Keeps every layer's ``[G, d_in, d_out]`` weights as the same values stored output-major.

        Each group's ``[d_out, d_in]`` block becomes contiguous (``nn.Linear``'s layout) behind an unchanged
        ``[G, d_in, d_out]`` view, so every forward computes the same products. For a serving package of a sparse
        arch: with few rows per group, MKL runs the per-group GEMMs of ``torch._grouped_mm``'s CPU loop faster on
        this layout (SMES at 64 candidates: -16% latency, docs/benchmarks.md section 7), while dense batched GEMMs
        run slower on it. TorchScript saves the strides, so an exported package keeps the layout.
        """
        for w in self.weights:
            w.data = w.data.transpose(1, 2).contiguous().transpose(1, 2)

    def _activate(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h) if i < len(self.weights) - 1 or self.activate_last else h

    def forward(self, x_PD: torch.Tensor, offsets_G: torch.Tensor, group_of_row_P: torch.Tensor) -> torch.Tensor:
        """Sparse execution: each group runs only on its own contiguous rows (see :func:`grouped_mlp`)."""
        return grouped_mlp(x_PD, offsets_G, group_of_row_P, list(self.weights), list(self.biases),
                           self.activate_last)

    def forward_all(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Dense execution: every group on every row. Returns ``[G, B, H]``."""
        h = x_BD.unsqueeze(0)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self._activate(i, torch.matmul(h, w) + b.unsqueeze(1))
        return h

    def forward_per_group(self, x_GBD: torch.Tensor) -> torch.Tensor:
        """Group g on its own input ``x_GBD[g]``. Returns ``[G, B, H]``."""
        h = x_GBD
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self._activate(i, torch.baddbmm(b.unsqueeze(1), h, w))
        return h
