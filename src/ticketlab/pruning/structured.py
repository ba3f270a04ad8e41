"""Structured IMP: prune whole neurons (rows of a Linear weight, output channels of a convolution)
by the L2 norm of their surviving trained weights, ``prune.rate`` of each layer's remaining neurons
per level (Li et al. 2017's criterion, applied iteratively like IMP).

Structured sparsity is the kind dense hardware can use: a removed neuron is a smaller matrix, no
sparse kernel needed (``ticketlab export --format structured`` builds that smaller model). The
price is accuracy, which the same evidence tables as unstructured IMP measure.

* The output layer's neurons are the model's outputs (the classes), so they are never removed.
* In a plain chain of layers (ticketlab's ``MLP`` and ``ConvNet``), a removed neuron's outgoing
  weights are masked too: the next layer's input columns (the block of flattened columns for a
  convolution feeding a Linear layer). They could only ever multiply the neuron's constant output,
  and counting them as "remaining" would overstate what is left. In other architectures (residual
  streams, attention) a neuron's output may reach later layers by other paths, so only its row is
  masked; say so in results.
* Only weights with at least two dimensions have neurons; a prunable 1-D parameter (a bias or a
  norm scale, when ``prune.roles`` asks for them) is left as it is.
* Counts are exact per layer (``count_to_prune`` on the number of live neurons) and ties break
  by position, so the same weights always give the same mask.
"""

from __future__ import annotations

import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.pruning.magnitude import count_to_prune


def unit_norms(weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """L2 norm of each neuron's (row's) surviving weights."""
    return (weight.detach().float() * keep).flatten(1).norm(dim=1)


def prune_units(weight: torch.Tensor, keep: torch.Tensor, rate: float) -> torch.Tensor:
    """``keep`` with the ``rate`` share of its live rows (any survivor) of lowest norm removed."""
    live = keep.flatten(1).any(dim=1)
    live_rows = live.nonzero().squeeze(1)
    count = count_to_prune(rate, int(live_rows.numel()))
    order = torch.sort(unit_norms(weight, keep)[live_rows], stable=True).indices
    new = keep.clone()
    new[live_rows[order[:count]]] = False
    return new


def consumers(model: torch.nn.Module, names: list[str]) -> dict[str, str]:
    """Each neuron-bearing weight -> the weight that reads its neurons, for plain chains only."""
    from ticketlab.models.conv import ConvNet
    from ticketlab.models.mlp import MLP

    if type(model) not in (MLP, ConvNet):
        return {}
    return dict(zip(names, names[1:]))


def mask_inputs_of_removed_units(producer: torch.Tensor, consumer: torch.Tensor) -> torch.Tensor:
    """The consumer's keep-mask with the input columns of the producer's removed neurons zeroed."""
    removed = ~producer.flatten(1).any(dim=1)
    width = consumer.shape[1] // producer.shape[0]  # 1 for Linear/conv inputs; H*W after a flatten
    columns = removed.repeat_interleave(width)
    out = consumer.clone()
    out[:, columns] = False
    return out


class StructuredPruning:
    name = "structured"

    def check(self, config) -> None:
        if config.prune.strategy != "layerwise":
            raise ConfigError("structured pruning removes prune.rate of each layer's neurons (layerwise); "
                              "drop strategy='global'")

    def needs(self, level: int) -> set[Need]:
        return {Need.PREVIOUS_TRAINED}

    def next_mask(self, ctx: MaskContext) -> Mask:
        trained = ctx.trained(ctx.level - 1)
        neurons = [n for n, m in ctx.previous.items() if m.dim() >= 2]
        output = ctx.output_layer if ctx.output_layer in neurons else (neurons[-1] if neurons else None)
        new = {n: m.clone() for n, m in ctx.previous.items()}
        for name in neurons:
            if name != output:
                new[name] = prune_units(trained[name], ctx.previous[name], ctx.config.prune.rate)
        chain = consumers(ctx.model(), neurons)
        for producer, consumer in chain.items():
            if new[consumer].shape[1] % new[producer].shape[0] == 0:
                new[consumer] = mask_inputs_of_removed_units(new[producer], new[consumer])
        return Mask(new)
