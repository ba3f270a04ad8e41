"""What gets pruned, decided by the *role* of each parameter, not by layer order or name.

A parameter's role comes from the module that owns it:

* ``linear``     the weight of ``nn.Linear`` and of Hugging Face's ``Conv1D`` (GPT-2's
                 linear layer with a transposed weight)
* ``conv``       the weight of ``nn.Conv1d/2d/3d`` and transposed convolutions
* ``attention``  ``nn.MultiheadAttention``'s ``in_proj_weight`` (or ``q/k/v_proj_weight``) and
                 its output projection
* ``recurrent``  the input-to-hidden and hidden-to-hidden weights of ``nn.RNN/LSTM/GRU``
                 (``weight_ih_l<k>``, ``weight_hh_l<k>``, every layer and direction, and an LSTM's
                 projection ``weight_hr_l<k>``) and of the ``RNNCell/LSTMCell/GRUCell``
* ``embedding``  ``nn.Embedding`` / ``nn.EmbeddingBag`` tables
* ``norm``       scales of BatchNorm, LayerNorm, GroupNorm, RMSNorm and the like
* ``bias``       the biases of those modules (``bias``, MHA's ``in_proj_bias``/``bias_k``/``bias_v``,
                 recurrent ``bias_ih``/``bias_hh``)
* ``other``      everything else (a learned positional table, a class token, ...)

A parameter that no known module type explains (a raw ``nn.Parameter`` used through
``F.linear``, ``x @ w`` or ``x + b``) gets the roles of what the traced forward pass does with
it (``ticketlab.usage``): the weight of a linear function or matrix product is ``linear``, the
bias argument of a linear, convolution or norm and a vector added to a larger tensor are
``bias``; never a guess from its name. (Only without a trace, as in ``masks.prunable_names``,
is a name ending in ``bias`` taken for a bias.)

IMP prunes ``linear``, ``conv``, ``attention`` and ``recurrent`` by default (the paper prunes
weights, not biases or norms); ``prune.roles`` adds ``embedding``, ``norm``, ``bias`` or
``other`` on request, and ``prune.include`` / ``prune.exclude`` patterns narrow the selection
by name. A run that prunes less than a tenth of the model's parameters says so when it starts
(:func:`selection_note`).

A tied parameter (one tensor reachable under two names, e.g. GPT's input embedding and output
layer) has one canonical name (the first under which ``named_parameters`` yields it), every
role of every module that uses it, and one mask.

The *output layer* (which gets ``prune.output_rate``) is the last pruned weight whose result
reaches the model's output: found by tracing one forward pass (on the ``meta`` device where
possible, so it costs nothing) at the level of torch functions, so it is found in a model
that calls ``F.linear`` on raw parameters as in one built of modules; named by
``prune.output_layer`` when the user knows better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.usage import ForwardTrace, trace_forward

ROLES = ("linear", "conv", "attention", "recurrent", "embedding", "norm", "bias", "other")
DEFAULT_ROLES = ("linear", "conv", "attention", "recurrent")
#: Below this fraction of the model's parameters pruned, a run says so when it starts.
NARROW_SELECTION = 0.1

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_ATTENTION_BIASES = ("in_proj_bias", "bias_k", "bias_v")
_RECURRENT_WEIGHT = re.compile(r"^weight_(ih|hh|hr)(_l\d+(_reverse)?)?$")
_RECURRENT_BIAS = re.compile(r"^bias_(ih|hh)(_l\d+(_reverse)?)?$")


class SelectionNote(UserWarning):
    """A run prunes a small part of its model (see :func:`selection_note`)."""


def _is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): a linear layer whose weight is stored [in, out]."""
    return type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.dim() == 2


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM) or "norm" in type(module).__name__.lower()


def _role(module: nn.Module, local_name: str, parent: nn.Module | None) -> str:
    """The role of parameter ``local_name`` of ``module`` (whose parent module is ``parent``) from
    the module's type; ``other`` when the type does not say (the trace may, see ``_usage_roles``)."""
    if isinstance(module, nn.MultiheadAttention):
        if local_name in _ATTENTION_WEIGHTS:
            return "attention"
        return "bias" if local_name in _ATTENTION_BIASES else "other"
    if isinstance(module, _RECURRENT):
        if _RECURRENT_WEIGHT.match(local_name):
            return "recurrent"
        return "bias" if _RECURRENT_BIAS.match(local_name) else "other"
    known = isinstance(module, (nn.Linear, *_CONV)) or _is_hf_conv1d(module) or _is_norm(module)
    if known and local_name == "bias":
        return "bias"
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


def _usage_roles(local_name: str, param: nn.Parameter, trace: ForwardTrace | None) -> list[str]:
    """The roles of a parameter its module's type does not explain: what the traced forward pass
    did with it, or ``other``. Without a trace (nothing ran) a name ending in ``bias`` is the
    only evidence there is, and is taken for a bias."""
    if trace is None:
        return ["bias" if local_name.endswith("bias") else "other"]
    return list(trace.roles.get(id(param), ())) or ["other"]


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


def _numel(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def pruned_fraction(plan: ParameterPlan) -> float:
    """The fraction of the model's parameters (tied ones counted once) that the plan prunes."""
    total = sum(_numel(s) for s in plan.shapes.values())
    return sum(_numel(plan.shapes[n]) for n in plan.pruned) / total if total else 1.0


def selection_note(plan: ParameterPlan, roles: tuple[str, ...], threshold: float = NARROW_SELECTION) -> str | None:
    """One line when the plan prunes less than ``threshold`` of the model's parameters, else None.

    A selection that leaves most of the network dense (an LSTM under roles that miss it, a model
    of embeddings) makes "sparsity" describe a sliver of the model; the user should hear it at
    the start of the run, with the roles that hold the rest and how to add them (``roles``: the
    run's ``prune.roles``)."""
    fraction = pruned_fraction(plan)
    if fraction >= threshold:
        return None
    unpruned: dict[str, int] = {}
    for name, kinds in plan.roles.items():
        if name not in plan.pruned:
            key = "+".join(kinds)
            unpruned[key] = unpruned.get(key, 0) + _numel(plan.shapes[name])
    held = ", ".join(f"{role} {count:,}" for role, count in sorted(unpruned.items(), key=lambda kv: -kv[1]))
    total = sum(_numel(s) for s in plan.shapes.values())
    return (f"this run prunes only {100 * fraction:.1f}% of the model's {total:,} parameters; the rest stays dense "
            f"(by role: {held}); to prune them add their roles to prune.roles (now {', '.join(roles)}; "
            f"--roles on the command line), or widen prune.include / prune.exclude")


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """Every extra name of a shared parameter -> its canonical (first) name."""
    canonical: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        first = canonical.setdefault(id(param), name)
        if first != name:
            aliases[name] = first
    return aliases


def parameter_roles(model: nn.Module, trace: ForwardTrace | None = None) -> dict[str, tuple[str, ...]]:
    """Canonical parameter name -> the roles of every module that uses it (``trace``: one traced
    forward pass, which decides the roles of parameters no module type explains)."""
    canonical = {id(p): n for n, p in model.named_parameters()}
    roles: dict[str, list[str]] = {n: [] for n in canonical.values()}
    parents: dict[int, nn.Module] = {}
    for _, module in model.named_modules():
        for child in module.children():
            parents.setdefault(id(child), module)
    for _, module in model.named_modules(remove_duplicate=False):
        for local, param in module.named_parameters(recurse=False):
            role = _role(module, local, parents.get(id(module)))
            found = [role] if role != "other" else _usage_roles(local, param, trace)
            name = canonical[id(param)]
            roles[name] += [r for r in found if r not in roles[name]]
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
    it is run once, under ``usage.trace_forward``, and decides both the roles no module type
    explains and the output layer. Without it those parameters are judged by name and the
    output layer is the last pruned parameter defined. Raises ConfigError when the selection
    is empty or names something unknown.
    """
    forward = trace_forward(model, trace) if trace is not None else None
    roles = parameter_roles(model, forward)
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
    output = _output_layer(model, prune, pruned, roles, aliases, forward)
    return ParameterPlan(roles, shapes, aliases, pruned, output)


def _output_layer(model: nn.Module, prune: Any, pruned: tuple[str, ...], roles: dict[str, tuple[str, ...]],
                  aliases: dict[str, str], forward: ForwardTrace | None) -> str | None:
    """The last pruned weight whose result reaches the model's output (see the module docstring).

    Biases and norm scales are not candidates (the bias added after the output layer reaches
    the output too, later, but it is not a layer), unless nothing else is pruned."""
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
    layers = [n for n in pruned if not set(roles[n]) <= {"bias", "norm"}] or list(pruned)
    if forward is None:
        return layers[-1]
    by_id = {id(p): n for n, p in model.named_parameters()}
    candidates = {i for i, n in by_id.items() if n in layers}
    found = forward.last_weight(candidates)
    if found is None:  # no pruned weight reaches the output: the last one that ran, if any
        ran = [p for node in forward.nodes for p in node.params if p in candidates]
        found = ran[-1] if ran else None
    return by_id[found] if found is not None else layers[-1]
