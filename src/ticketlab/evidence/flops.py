"""Floating-point operations of a model's forward pass, and how much of it a mask removes.

The total is measured by PyTorch's own ``FlopCounterMode`` on one example (every matmul,
convolution and attention product the forward pass runs, whatever the architecture). The part
that belongs to each weight is counted with forward hooks (so any model built of these modules
is counted, whatever its forward does): a weight entry of a Linear layer is used once per row it
transforms, a convolution kernel once per output position (2 FLOPs, a multiply and an add), and
an ``nn.MultiheadAttention``'s input and output projections once per token. Biases,
activations and normalisation do not shrink with a mask and are not attributed to weights. A mask at density d
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

from ticketlab.data.batch import ModelInputs, call, rows
from ticketlab.usage import forward_with_hooks

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


def weight_flops(model: nn.Module, example: ModelInputs,
                 mask: Mapping[str, torch.Tensor] | None = None) -> dict[str, tuple[int, int]]:
    """Per weight: (dense FLOPs, FLOPs of its surviving entries) of one forward pass on
    ``example`` (the whole batch). Survivors are the mask's where it names the weight, else the
    weight's nonzeros (an already masked or exported model passes no mask). A module that
    declares ``weight_counts()`` -> (dense weights, stored nonzeros), like the sparse export's
    ``SparseLinear``, counts once per output row under its module name."""
    names = {id(p): n for n, p in model.named_parameters()}
    module_names = {id(m): n for n, m in model.named_modules()}
    counts: dict[str, tuple[int, int]] = {}

    def add(name: str, dense: int, nonzeros: int, applications: int) -> None:
        old = counts.get(name, (0, 0))
        counts[name] = (old[0] + 2 * dense * applications, old[1] + 2 * nonzeros * applications)

    def record(weight: torch.Tensor, applications: int) -> None:
        name = names[id(weight)]
        kept = int(mask[name].sum()) if mask is not None and name in mask else int(torch.count_nonzero(weight))
        add(name, weight.numel(), kept, applications)

    def hook(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.MultiheadAttention):
            tokens = inputs[0].numel() // module.embed_dim  # (N, L, E) or (L, N, E): N*L tokens
            projections = ([module.in_proj_weight] if module.in_proj_weight is not None
                           else [module.q_proj_weight, module.k_proj_weight, module.v_proj_weight])
            for weight in projections:
                record(weight, tokens)
            record(module.out_proj.weight, tokens)  # called functionally: its own hook never fires
            return
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, nn.modules.conv._ConvNd):
            record(module.weight, out.numel() // module.out_channels)  # once per output position
        elif hasattr(module, "weight_counts"):
            add(module_names[id(module)], *module.weight_counts(), out.numel() // out.shape[-1])
        else:  # Linear: once per row it transforms
            record(module.weight, inputs[0].numel() // module.in_features)

    attention_projections = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.MultiheadAttention, nn.modules.conv._ConvNd)) or hasattr(m, "weight_counts")
               or (isinstance(m, nn.Linear) and id(m) not in attention_projections)]
    forward_with_hooks(model, example, handles)
    return counts


def dense_and_sparse_flops(model: nn.Module, mask: Mapping[str, torch.Tensor] | None,
                           example: ModelInputs) -> tuple[int, int]:
    """(dense, sparse) weight-multiply FLOPs per example of one forward pass (``example``'s
    batch divided out): what the exports report against the dense model."""
    counts = weight_flops(model, example, mask).values()
    batch = max(rows(example), 1)
    return sum(c[0] for c in counts) // batch, sum(c[1] for c in counts) // batch


def forward_flops(model: nn.Module, example: ModelInputs) -> ForwardFlops:
    """Measure ``model``'s forward FLOPs on ``example`` (one example, with its batch dimension):
    the total by ``FlopCounterMode``, each prunable weight's part by :func:`weight_flops`.

    A copy in training mode runs: eval mode would let PyTorch's fused Transformer fast path run
    kernels neither counter sees, and the copy keeps batch-norm statistics untouched."""
    model = copy.deepcopy(model).train()
    per_weight = {name: dense for name, (dense, _) in weight_flops(model, example).items()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call(model, example)
    return ForwardFlops(max(int(counter.get_total_flops()), sum(per_weight.values())), per_weight)
