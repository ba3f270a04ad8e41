"""Floating-point operations of a model's forward pass, and how much of it a mask removes.

The total is measured by PyTorch's own ``FlopCounterMode`` on one example (every matmul,
convolution and attention product the forward pass runs, whatever the architecture). The part
that belongs to each prunable weight is counted with forward hooks: a weight entry of a Linear
or Conv layer is used once per position it is applied at (2 FLOPs, a multiply and an add), and
an ``nn.MultiheadAttention``'s input and output projections once per token. A mask at density d
for a weight removes (1 - d) of that weight's FLOPs: what a kernel that skips pruned weights
would save. Dense-masked training (what the loop runs) pays the total whatever the mask.

A training step costs about 3 forward passes (forward, and the input and weight gradients).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

TRAINING_STEP_FORWARDS = 3  # forward + backward (input gradient + weight gradient)


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one example's forward pass: ``total``, and the part each named weight does."""

    total: int
    per_weight: dict[str, int]

    def at_density(self, density: Mapping[str, float]) -> float:
        """FLOPs left when each named weight keeps ``density[name]`` of its entries (others dense)."""
        removed = sum(flops * (1.0 - density[name]) for name, flops in self.per_weight.items() if name in density)
        return self.total - removed


def forward_flops(model: nn.Module, example: torch.Tensor) -> ForwardFlops:
    """Measure ``model``'s forward FLOPs on ``example`` (one example, with its batch dimension)."""
    model = copy.deepcopy(model).train()
    per_weight: dict[str, int] = {}
    names = {id(p): n for n, p in model.named_parameters()}
    hooks = []

    def count(name: str, flops: int) -> None:
        per_weight[name] = per_weight.get(name, 0) + flops

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        count(names[id(module.weight)], 2 * module.weight.numel() * (inputs[0].numel() // module.in_features))

    def conv_hook(module: nn.modules.conv._ConvNd, inputs, output) -> None:
        positions = output.numel() // module.out_channels
        count(names[id(module.weight)], 2 * module.weight.numel() * positions)

    def attention_hook(module: nn.MultiheadAttention, inputs, output) -> None:
        query = inputs[0]
        tokens = query.numel() // module.embed_dim
        if module.in_proj_weight is not None:
            count(names[id(module.in_proj_weight)], 2 * module.in_proj_weight.numel() * tokens)
        count(names[id(module.out_proj.weight)], 2 * module.out_proj.weight.numel() * tokens)

    attention_projections = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            hooks.append(module.register_forward_hook(attention_hook))
        elif isinstance(module, nn.Linear) and id(module) not in attention_projections:
            hooks.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(conv_hook))
    # A copy in training mode: eval mode would let PyTorch's fused Transformer fast path run
    # kernels the counter does not see, and the copy keeps batch-norm statistics untouched.
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    total = int(counter.get_total_flops())
    return ForwardFlops(max(total, sum(per_weight.values())), per_weight)
