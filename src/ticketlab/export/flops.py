"""Weight-multiply FLOPs per example, dense against sparse, measured by running the model once.

What is counted: the multiply-adds of weight tensors, 2 per weight per application --
a Linear weight is applied once per row it transforms (once per example for an MLP, once per
token for a Transformer), a convolution kernel once per output position, and
``nn.MultiheadAttention``'s packed input and output projections once per token. Biases,
activations, pooling, normalisation and the attention score products are not counted: they
do not shrink with the mask, and for the networks ticketlab prunes they are a small part.
A sparse FLOP assumes a kernel that skips zeros; real speed is what ``bench/export.py`` measures.

Counting by forward hooks (rather than by formulas per architecture) means any model built
of these modules is counted, whatever its forward does, including the structured and sparse
exports of ``ticketlab.export`` (their modules are Linear/Conv subclasses or declare
``weight_counts()`` returning (dense weights, nonzero weights)).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _nonzeros(name: str, weight: torch.Tensor, mask: Mapping[str, torch.Tensor] | None) -> int:
    """Weights that survive: the mask's count where it has the parameter, else the nonzeros."""
    if mask is not None and name in mask:
        return int(mask[name].sum())
    return int(torch.count_nonzero(weight))


def dense_and_sparse_flops(
    model: nn.Module, mask: Mapping[str, torch.Tensor] | None, example_input: torch.Tensor
) -> tuple[int, int]:
    """(dense FLOPs, sparse FLOPs) per example of one forward pass of ``model`` on ``example_input``.

    ``mask`` names the parameters as ``model.named_parameters()`` does; weights it does not
    name count their nonzeros (so an already-masked or exported model can pass None). The
    count is divided by the batch size, ``example_input.shape[0]``.
    """
    totals = [0, 0]
    names = {module: name for name, module in model.named_modules()}

    def record(weight: torch.Tensor, weight_name: str, applications: int) -> None:
        add(weight.numel(), _nonzeros(weight_name, weight, mask), applications)

    def add(dense: int, nonzeros: int, applications: int) -> None:
        totals[0] += 2 * dense * applications
        totals[1] += 2 * nonzeros * applications

    def hook(module: nn.Module, inputs, output) -> None:
        prefix = names[module] + "." if names[module] else ""
        if isinstance(module, nn.MultiheadAttention):
            query = inputs[0]
            tokens = query.numel() // module.embed_dim  # (N, L, E) or (L, N, E): N*L tokens
            if module.in_proj_weight is not None:
                record(module.in_proj_weight, prefix + "in_proj_weight", tokens)
            else:
                for part in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    record(getattr(module, part), prefix + part, tokens)
            # out_proj is called functionally by MultiheadAttention, so its own hook never fires.
            record(module.out_proj.weight, prefix + "out_proj.weight", tokens)
            return
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, _CONV):
            record(module.weight, prefix + "weight", math.prod(out.shape[2:]) * out.shape[0])
        elif hasattr(module, "weight_counts"):  # e.g. SparseLinear: one application per output row
            add(*module.weight_counts(), out.numel() // out.shape[-1])
        else:  # Linear: one application per row of the output
            record(module.weight, prefix + "weight", out.numel() // out.shape[-1])

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (nn.Linear, nn.MultiheadAttention, *_CONV)) or hasattr(module, "weight_counts")
    ]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    batch = max(int(example_input.shape[0]), 1)
    return totals[0] // batch, totals[1] // batch
