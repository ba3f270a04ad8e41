"""Structured export: the units and channels pruning left dead, physically removed.

A chain (see ``ticketlab.export.chain``) of Linear/Conv2d layers with elementwise activations,
max-pooling and flattening between them becomes a smaller dense chain that computes the same
function. Between two weighted layers A and B, a unit (Linear output or conv channel) ``j`` of A

* is **dead** when every weight of B that reads it is pruned: nothing downstream sees it;
* is **constant** when every weight of A that feeds it is pruned: its output is
  ``act(bias_j)`` everywhere. A zero constant is dead. A nonzero one is folded into B's bias
  (``bias_B += W_B[:, j] * act(bias_j)``) when B is Linear; when B is a convolution it is kept,
  because zero padding makes a constant channel's contribution differ at the borders.

Removing a unit zeroes more rows and columns, so this repeats until nothing changes. Inputs
that no surviving first-layer weight reads (the border pixels IMP strips from MNIST) are
dropped too when the first weighted layer is Linear; the exported network gathers the kept
input indices (``input_index``, stored in the file) itself. Output units are never removed.

In a Transformer (any model with ``nn.TransformerEncoderLayer`` modules) the same rules shrink each
layer's feed-forward block: hidden unit ``j`` of ``linear1``/``linear2`` is dead when
``linear2``'s column ``j`` is pruned, and constant (folded into ``linear2``'s bias, exactly,
since the block is applied to every token alike) when ``linear1``'s row ``j`` is. Attention and
the other weights stay dense-masked. Such a model is stored as its registry name plus the kept
widths, and rebuilt from ticketlab's model registry. Any other architecture is refused with a
one-line error: use the sparse or ONNX export for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ticketlab.errors import ConfigError, StoreError
from ticketlab.export._files import filled, read_export, recorded_model, write_export
from ticketlab.export.chain import ChainNet, Op, build_layer, describe_input, is_weighted, ops_of

KIND = "ticketlab-structured"


def structured_model(
    model: nn.Module, mask: Mapping[str, torch.Tensor], example_input: torch.Tensor,
) -> tuple[nn.Module, dict[str, Any]]:
    """The smaller network of ``model`` (its weights loaded) and a record of what was removed."""
    if ops_of(model) is not None:
        return structured_chain(model, mask, example_input)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.TransformerEncoderLayer)]
    if not layers:
        raise ConfigError(f"the structured export handles chains of Linear/Conv2d layers (LeNet, mlp_*, conv*) and "
                          f"Transformer feed-forward blocks; {type(model).__name__} has neither: use --format sparse or onnx")
    return structured_feedforward(model, mask, layers)


@torch.no_grad()
def structured_feedforward(model, mask, layers) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model``, masked, with each encoder layer's dead feed-forward units removed."""
    import copy

    from ticketlab.export.prune_interop import apply_mask

    net = apply_mask(copy.deepcopy(model), mask).eval()
    record: dict[str, Any] = {"units": {}, "inputs": None, "feedforward": {}}
    for name, _ in layers:
        layer = net.get_submodule(name)
        w1, b1, w2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight
        b2 = layer.linear2.bias.clone() if layer.linear2.bias is not None else None
        keep = w2.any(dim=0)
        constant = ~w1.any(dim=1) & keep
        if b2 is not None and bool(constant.any()):
            values = layer.activation(b1[constant] if b1 is not None else torch.zeros(int(constant.sum())))
            b2 += w2[:, constant] @ values
            keep &= ~constant
        elif b1 is not None:  # without a bias to fold into, only units whose constant is zero can go
            keep &= ~(constant & (layer.activation(b1) == 0))
        width = int(keep.sum())
        linear1 = nn.Linear(w1.shape[1], width, bias=b1 is not None)
        linear2 = nn.Linear(width, w2.shape[0], bias=b2 is not None)
        linear1.weight.copy_(w1[keep])
        if b1 is not None:
            linear1.bias.copy_(b1[keep])
        linear2.weight.copy_(w2[:, keep])
        if b2 is not None:
            linear2.bias.copy_(b2)
        layer.linear1, layer.linear2 = linear1, linear2
        record["units"][f"{name}.linear1"] = [int(keep.numel()), width]
        record["feedforward"][name] = width
    return net, record


def _columns(weight: torch.Tensor, unit: int, block: int) -> tuple[slice, ...]:
    """Index of B's weights that read A's unit ``unit`` (``block`` columns per unit for a flattened conv)."""
    return (slice(None), slice(unit * block, (unit + 1) * block))


@torch.no_grad()
def structured_chain(model: nn.Module, mask: Mapping[str, torch.Tensor], example_input: torch.Tensor) -> tuple[ChainNet, dict[str, Any]]:
    """The smaller network, and a record of what was removed: {"units": {layer: [before, after]}, "inputs": [...]}."""
    chain = ops_of(model)
    if chain is None:
        raise ConfigError(f"the structured export handles chains of Linear/Conv2d layers (LeNet, mlp_*, conv*); "
                          f"{type(model).__name__} is not one: use --format sparse or onnx")
    ops = [dict(op) for op, _, _ in chain]
    weights: dict[int, torch.Tensor] = {}
    biases: dict[int, torch.Tensor | None] = {}
    for index, (op, name, module) in enumerate(chain):
        if is_weighted(op):
            if op["op"] == "conv2d" and op["groups"] != 1:
                raise ConfigError("the structured export does not handle grouped convolutions")
            weight = module.weight.detach().clone()
            if f"{name}.weight" in mask:
                weight *= mask[f"{name}.weight"].to(weight.dtype)
            weights[index] = weight
            biases[index] = module.bias.detach().clone() if module.bias is not None else None
    layers = sorted(weights)
    if not layers:
        raise ConfigError("the model has no Linear or Conv2d layer to shrink")
    blocks = _blocks(chain, layers, example_input)
    keep = {index: torch.ones(weights[index].shape[0], dtype=torch.bool) for index in layers}

    changed = True
    while changed:
        changed = False
        for a, b in zip(layers, layers[1:]):
            block = blocks[b]
            for unit in keep[a].nonzero().flatten().tolist():
                reads = weights[b][_columns(weights[b], unit, block)]
                if not bool(reads.any()):
                    remove = True
                elif not bool(weights[a][unit].any()):
                    constant = _constant(chain[a + 1 : b], biases[a][unit] if biases[a] is not None else None)
                    remove = constant == 0 or (ops[b]["op"] == "linear" and biases[b] is not None)
                    if remove and constant != 0:
                        biases[b] += reads.reshape(reads.shape[0], -1).sum(dim=1) * constant
                else:
                    remove = False
                if remove:
                    keep[a][unit] = False
                    weights[a][unit] = 0
                    if biases[a] is not None:
                        biases[a][unit] = 0
                    weights[b][_columns(weights[b], unit, block)] = 0
                    changed = True

    first = layers[0]
    input_index = None
    if ops[first]["op"] == "linear" and all(op["op"] == "flatten" for op in ops[:first]):
        used = weights[first].any(dim=0)
        if not bool(used.all()):
            input_index = used.nonzero().flatten()

    record: dict[str, Any] = {"units": {}, "inputs": None}
    new_layers = []
    previous_keep: torch.Tensor | None = None
    for index, op in enumerate(ops):
        if not is_weighted(op):
            new_layers.append(build_layer(op))
            continue
        weight, bias = weights[index], biases[index]
        rows = keep[index]
        weight, bias = weight[rows], (bias[rows] if bias is not None else None)
        if previous_keep is not None:
            columns = previous_keep.repeat_interleave(blocks[index]) if op["op"] == "linear" else previous_keep
            weight = weight[:, columns]
        elif input_index is not None:
            weight = weight[:, input_index]
        if op["op"] == "linear":
            op.update(in_features=weight.shape[1], out_features=weight.shape[0])
        else:
            op.update(in_channels=weight.shape[1], out_channels=weight.shape[0])
        layer = build_layer(op)
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
        new_layers.append(layer)
        record["units"][chain[index][1]] = [int(rows.numel()), int(rows.sum())]
        previous_keep = rows
    if input_index is not None:
        record["inputs"] = [int(weights[first].shape[1]), int(input_index.numel())]
    net = ChainNet(nn.Sequential(*new_layers), input_index).eval()
    net.ops = ops  # type: ignore[attr-defined]  # the JSON description, for save_structured
    return net, record


def _blocks(chain, layers: list[int], example_input: torch.Tensor) -> dict[int, int]:
    """Columns of each weighted layer that one unit of the previous weighted layer feeds (1, or
    the spatial size of a conv channel flattened into a Linear layer)."""
    shapes: dict[int, tuple[int, ...]] = {}
    handles = [module.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(i[0].shape)))
               for k, (_, _, module) in enumerate(chain) if k in layers]
    try:
        x = example_input
        for _, _, module in chain:
            x = module(x)
    finally:
        for handle in handles:
            handle.remove()
    blocks = {layers[0]: 1}
    for a, b in zip(layers, layers[1:]):
        if chain[b][0]["op"] == "linear":
            units = chain[a][0]["out_features" if chain[a][0]["op"] == "linear" else "out_channels"]
            if shapes[b][-1] % units:
                raise ConfigError(f"cannot map the outputs of {chain[a][1]} onto the inputs of {chain[b][1]}")
            blocks[b] = shapes[b][-1] // units
        else:
            blocks[b] = 1
    return blocks


def _constant(between, bias: torch.Tensor | None) -> float:
    """The value a unit with no incoming weights takes after the (elementwise) layers before the next one."""
    value = torch.zeros(1, 1) if bias is None else bias.reshape(1, 1).clone()
    for op, _, module in between:
        if op["op"] in ("maxpool2d", "flatten"):
            continue  # a constant map stays that constant
        value = module(value)
    return float(value.reshape(()))


def save_structured(
    net: nn.Module, path: str | Path, example_input: torch.Tensor, model_spec: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
) -> None:
    """Write a network from :func:`structured_model`: dense tensors plus its layer list, or, for
    a Transformer, its registry name (``model_spec``) and feed-forward widths (from ``record``)."""
    if isinstance(net, ChainNet):
        tensors = {f"body.{k}": v for k, v in net.body.state_dict().items()}
        if net.input_index is not None:
            tensors["input_index"] = net.input_index.to(torch.int64)
        write_export(path, tensors, KIND, {"chain": net.ops, "input": describe_input(example_input)})
        return
    from ticketlab.weights import state_of

    if model_spec is None or record is None:
        raise ConfigError("a structured Transformer is saved with its model name and data shape (model_spec)")
    write_export(path, dict(state_of(net)), KIND, {"model": model_spec, "feedforward": record["feedforward"],
                                                    "input": describe_input(example_input)})


def load_structured(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The network of a structured export, in eval mode (tensors and JSON only). A Transformer is
    rebuilt from ticketlab's model registry, or pass ``model`` (a fresh instance) for a user model."""
    tensors, record = read_export(path, KIND)
    if "chain" not in record:
        return _load_feedforward(path, tensors, record, model)
    ops: list[Op] = record["chain"]
    body = nn.Sequential(*(build_layer(op) for op in ops))
    state = {k.removeprefix("body."): v for k, v in tensors.items() if k.startswith("body.")}
    try:
        body.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise StoreError(f"{path}: tensors do not fit the recorded layers ({str(exc).splitlines()[0]})") from None
    net = ChainNet(body, tensors.get("input_index"))
    net.ops = ops  # type: ignore[attr-defined]
    return net.eval()


def _load_feedforward(path, tensors, record, model: nn.Module | None) -> nn.Module:
    model = recorded_model(record["model"], model)
    for name, width in record["feedforward"].items():
        layer = model.get_submodule(name)
        layer.linear1 = nn.Linear(layer.linear1.in_features, width, bias=layer.linear1.bias is not None)
        layer.linear2 = nn.Linear(width, layer.linear2.out_features, bias=layer.linear2.bias is not None)
    return filled(model, tensors, path)
