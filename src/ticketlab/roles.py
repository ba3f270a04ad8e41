"""What gets pruned, decided by the *role* of each parameter, not by layer order or name.

A parameter's role comes from the module that owns it:

* ``linear``     the weight of ``nn.Linear`` and of Hugging Face's ``Conv1D`` (GPT-2's
                 linear layer with a transposed weight)
* ``conv``       the weight of ``nn.Conv1d/2d/3d`` and transposed convolutions
* ``attention``  ``nn.MultiheadAttention``'s ``in_proj_weight`` (or ``q/k/v_proj_weight``) and
                 its output projection
* ``embedding``  ``nn.Embedding`` / ``nn.EmbeddingBag`` tables
* ``norm``       scales of BatchNorm, LayerNorm, GroupNorm, RMSNorm and the like
* ``bias``       any bias
* ``other``      everything else (a learned positional table, a class token, ...)

IMP prunes ``linear``, ``conv`` and ``attention`` by default (the paper prunes weights, not
biases or norms); ``prune.roles`` adds ``embedding``, ``norm``, ``bias`` or ``other`` on
request, and ``prune.include`` / ``prune.exclude`` patterns narrow the selection by name.
A tied parameter (one tensor reachable under two names, e.g. GPT's input embedding and output
layer) has one canonical name (the first under which ``named_parameters`` yields it), every
role of every module that uses it, and one mask.

The *output layer* (which gets ``prune.output_rate``) is the one that produces the model's
output: found by running one forward pass (on the ``meta`` device where possible, so it costs
nothing) and seeing which module's output the model returned; named by ``prune.output_layer``
when the user knows better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ticketlab.errors import ConfigError

ROLES = ("linear", "conv", "attention", "embedding", "norm", "bias", "other")
DEFAULT_ROLES = ("linear", "conv", "attention")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def _is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): a linear layer whose weight is stored [in, out]."""
    return type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.dim() == 2


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM) or "norm" in type(module).__name__.lower()


def _role(module: nn.Module, local_name: str, parent: nn.Module | None) -> str:
    """The role of parameter ``local_name`` of ``module`` (whose parent module is ``parent``)."""
    if local_name.endswith("bias"):
        return "bias"
    if isinstance(module, nn.MultiheadAttention) and local_name in _ATTENTION_WEIGHTS:
        return "attention"
    if isinstance(module, nn.Linear) and local_name == "weight":
        return "attention" if isinstance(parent, nn.MultiheadAttention) else "linear"
    if _is_hf_conv1d(module) and local_name == "weight":
        return "linear"
    if isinstance(module, _CONV) and local_name == "weight":
        return "conv"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and local_name == "weight":
        return "embedding"
    if _is_norm(module):
        return "norm"
    return "other"


@dataclass(frozen=True)
class ParameterPlan:
    """Every parameter of a model with its roles, and which of them IMP prunes.

    It is JSON-able (``to_json``), so an experiment records what it pruned and why, and the
    pruning of later levels needs only this record and the stored weights, not the model code.
    """

    roles: dict[str, tuple[str, ...]]  # canonical name -> roles, in named_parameters order
    shapes: dict[str, tuple[int, ...]]
    aliases: dict[str, str] = field(default_factory=dict)  # tied alias -> canonical name
    pruned: tuple[str, ...] = ()
    output: str | None = None  # the canonical name of the output layer's weight, if pruned

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": {n: {"roles": list(r), "shape": list(self.shapes[n])} for n, r in self.roles.items()},
            "aliases": dict(self.aliases),
            "pruned": list(self.pruned),
            "output": self.output,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "ParameterPlan":
        params = record["parameters"]
        return cls(
            roles={n: tuple(p["roles"]) for n, p in params.items()},
            shapes={n: tuple(p["shape"]) for n, p in params.items()},
            aliases=dict(record.get("aliases", {})),
            pruned=tuple(record["pruned"]),
            output=record.get("output"),
        )

    def describe(self) -> str:
        """One line per role: what was pruned, for examples and the report."""
        counts: dict[str, list[int]] = {}
        for name, roles in self.roles.items():
            size = 1
            for dim in self.shapes[name]:
                size *= dim
            entry = counts.setdefault("+".join(roles), [0, 0, 0, 0])
            entry[0] += 1
            entry[1] += size
            if name in self.pruned:
                entry[2] += 1
                entry[3] += size
        lines = [f"{role}: {p} of {n} tensors pruned ({ps:,} of {s:,} weights)" for role, (n, s, p, ps) in counts.items()]
        if self.output:
            lines.append(f"output layer: {self.output}")
        if self.aliases:
            lines.append("tied: " + ", ".join(f"{a} = {c}" for a, c in self.aliases.items()))
        return "\n".join(lines)


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """Every extra name of a shared parameter -> its canonical (first) name."""
    canonical: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        first = canonical.setdefault(id(param), name)
        if first != name:
            aliases[name] = first
    return aliases


def parameter_roles(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Canonical parameter name -> the roles of every module that uses it."""
    canonical = {id(p): n for n, p in model.named_parameters()}
    roles: dict[str, list[str]] = {n: [] for n in canonical.values()}
    parents: dict[int, nn.Module] = {}
    for _, module in model.named_modules():
        for child in module.children():
            parents.setdefault(id(child), module)
    for _, module in model.named_modules(remove_duplicate=False):
        for local, param in module.named_parameters(recurse=False):
            role = _role(module, local, parents.get(id(module)))
            name = canonical[id(param)]
            if role not in roles[name]:
                roles[name].append(role)
    return {n: tuple(r) for n, r in roles.items()}


def _selected(name: str, roles: tuple[str, ...], wanted: tuple[str, ...], include: tuple[str, ...],
              exclude: tuple[str, ...]) -> bool:
    if not any(r in wanted for r in roles):
        return False
    if include and not any(re.search(p, name) for p in include):
        return False
    return not any(re.search(p, name) for p in exclude)


def plan_parameters(
    model: nn.Module,
    prune: Any,
    trace: Callable[[nn.Module], torch.Tensor] | None = None,
) -> ParameterPlan:
    """The model's parameters, their roles, what ``prune`` selects, and the output layer.

    ``trace(model)`` runs one forward pass and returns the model's output tensor (the logits);
    without it the output layer is the last pruned parameter in forward order unknown, so the
    last one defined. Raises ConfigError when the selection is empty or names something unknown.
    """
    roles = parameter_roles(model)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    aliases = tied_aliases(model)
    wanted = tuple(prune.roles)
    pruned = tuple(n for n, r in roles.items() if _selected(n, r, wanted, prune.include, prune.exclude))
    for pattern in prune.include:
        if not any(re.search(pattern, n) for n in pruned):
            matched = [n for n in roles if re.search(pattern, n)]
            if matched:
                missing = sorted({r for n in matched for r in roles[n]} - set(wanted))
                raise ConfigError(
                    f"prune.include {pattern!r} matches only parameters with role(s) {', '.join(missing)} "
                    f"({matched[0]}, ...), which are not pruned; add them to prune.roles to prune them"
                )
    if not pruned:
        raise ConfigError("no parameter of the model matches prune.roles and the include/exclude patterns; nothing to prune")
    output = _output_layer(model, prune, pruned, aliases, trace)
    return ParameterPlan(roles, shapes, aliases, pruned, output)


def _output_layer(model, prune, pruned, aliases, trace) -> str | None:
    """The pruned weight whose module produced the model's output (see the module docstring)."""
    named = getattr(prune, "output_layer", None)
    if named:
        name = aliases.get(named, named)
        if name not in pruned and f"{name}.weight" in pruned:
            name = f"{name}.weight"
        name = aliases.get(name, name)
        if name not in pruned:
            raise ConfigError(f"prune.output_layer {named!r} is not a pruned parameter or module; "
                              f"pruned: {', '.join(pruned[:6])}{', ...' if len(pruned) > 6 else ''}")
        return name
    if trace is None:
        return pruned[-1]
    canonical = {id(p): n for n, p in model.named_parameters()}
    pruned_set = set(pruned)
    ran: list[tuple[str, Any]] = []  # (pruned weight name, module output), in forward order

    def hook(module, args, output):
        for _, param in module.named_parameters(recurse=False):
            name = canonical.get(id(param))
            if name in pruned_set:
                ran.append((name, output))
                return

    handles = [m.register_forward_hook(hook) for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    try:
        result = trace(model)
    finally:
        for handle in handles:
            handle.remove()
    for name, output in reversed(ran):
        if output is result or (isinstance(output, torch.Tensor) and _same_storage(output, result)):
            return name
    return ran[-1][0] if ran else pruned[-1]


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``b`` is a view of ``a`` (HF models reshape the logits they return)."""
    if a.device.type == "meta" or b.device.type == "meta":
        return a.shape == b.shape and a.dtype == b.dtype and a.numel() == b.numel() and a is b
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:
        return False
