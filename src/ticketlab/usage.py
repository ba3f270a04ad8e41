"""What each parameter *does* in one forward pass, seen at the level of torch functions.

Names say nothing reliable: ``b1`` may be a bias and ``w1`` the first of three layers, so the
roles of parameters that no known module type explains, and which weight produces the model's
output, are read from what the forward pass does with them. A
:class:`~torch.overrides.TorchFunctionMode` sees every torch function the model calls (on the
``meta`` device too, where it costs nothing), with the parameter objects themselves as
arguments. From that, :func:`trace_forward` records

* the roles a parameter's uses imply: the weight of ``F.linear`` or of a matrix product is a
  ``linear`` weight, the ``bias`` argument of a linear, convolution or norm is a ``bias``, a
  vector-shaped parameter added to a larger tensor is a ``bias``, ... (:data:`ARGUMENT_ROLES`);
* which operation each tensor came from and which parameters that operation used, so that the
  *last* weight whose result reaches the output can be found afterwards
  (:meth:`ForwardTrace.last_weight`), for whatever set of weights ends up pruned.

Views of a parameter (``w.t()``, ``w.view(...)``, ``w[:k]``) stand for the parameter itself.
Only the outermost torch function is seen (a mode is switched off while its function runs),
so ``F.multi_head_attention_forward`` is one operation using all its weights, in argument order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ticketlab.data.batch import call
# Operations whose result is (a view or copy of) their first tensor: a parameter seen through them
# is still that parameter (``w.t()`` in ``x @ w.t()`` is the weight ``w``).
VIEW_OPS = frozenset({
    "t", "transpose", "permute", "view", "view_as", "reshape", "reshape_as", "contiguous", "__get__",
    "expand", "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten", "to", "type", "type_as",
    "float", "double", "half", "bfloat16", "clone", "detach", "__getitem__", "narrow", "chunk", "split",
    "unbind", "movedim", "swapaxes", "swapdims", "select", "mT", "T",
})

# function name -> ((argument position, keyword, role), ...): the role of a parameter passed there.
ARGUMENT_ROLES: dict[str, tuple[tuple[int, str, str], ...]] = {
    "linear": ((1, "weight", "linear"), (2, "bias", "bias")),
    "bilinear": ((3, "bias", "bias"),),
    "embedding": ((1, "weight", "embedding"),),
    "embedding_bag": ((1, "weight", "embedding"),),
    "layer_norm": ((2, "weight", "norm"), (3, "bias", "bias")),
    "group_norm": ((2, "weight", "norm"), (3, "bias", "bias")),
    "rms_norm": ((2, "weight", "norm"),),
    "batch_norm": ((3, "weight", "norm"), (4, "bias", "bias")),
    "instance_norm": ((3, "weight", "norm"), (4, "bias", "bias")),
    **{f"conv{kind}{d}d": ((1, "weight", "conv"), (2, "bias", "bias"))
       for kind in ("", "_transpose") for d in (1, 2, 3)},
}
MATRIX_PRODUCTS = frozenset({"matmul", "__matmul__", "__rmatmul__", "mm", "addmm"})
ADDITIONS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})


@dataclass
class _Node:
    """One operation of the forward pass: its order, the parameters it used directly (ids, in
    argument order) and the operations its tensor inputs came from."""

    seq: int
    params: tuple[int, ...]
    parents: tuple[int, ...]


@dataclass
class ForwardTrace:
    """What one forward pass did with each parameter (by ``id``) and where its output came from."""

    roles: dict[int, list[str]] = field(default_factory=dict)
    nodes: list[_Node] = field(default_factory=list)
    output: int | None = None  # the node that produced the traced output

    def last_weight(self, candidates: set[int]) -> int | None:
        """The parameter (id) among ``candidates`` used by the latest operation whose result
        reaches the output; the last such parameter in argument order when one operation uses
        several (``out_proj`` after ``in_proj`` in attention). None when none reaches it."""
        if self.output is None:
            return None
        best: _Node | None = None
        seen, stack = set(), [self.output]
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            node = self.nodes[index]
            if any(p in candidates for p in node.params) and (best is None or node.seq > best.seq):
                best = node
            stack.extend(node.parents)
        return None if best is None else [p for p in best.params if p in candidates][-1]


def _vector_like(tensor: torch.Tensor) -> bool:
    """At most one dimension longer than 1: the shape of a bias (``[d]``, ``[1, d]``, ``[1, c, 1, 1]``)."""
    return sum(1 for size in tensor.shape if size > 1) <= 1


class _Recorder(TorchFunctionMode):
    """Records each torch function's parameter uses and tensor lineage (see the module docstring)."""

    def __init__(self, params: dict[int, nn.Parameter]) -> None:
        super().__init__()
        self.params = params
        self.trace = ForwardTrace()
        self.alias: dict[int, int] = {}  # id of a view of a parameter -> the parameter's id
        self.node_of: dict[int, int] = {}  # id of a produced tensor -> its node
        self.alive: list[Any] = []  # every tensor seen stays alive so that no id is reused

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self._record(getattr(func, "__name__", ""), args, kwargs, result)
        return result

    def param_id(self, value: Any) -> int | None:
        """The id of the parameter ``value`` is (or is a view of), else None."""
        if not isinstance(value, torch.Tensor):
            return None
        if id(value) in self.params:
            return id(value)
        return self.alias.get(id(value))

    def _record(self, name: str, args: tuple, kwargs: dict, result: Any) -> None:
        inputs = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        outputs = [leaf for leaf in tree_flatten(result)[0] if isinstance(leaf, torch.Tensor)]
        self.alive += inputs + outputs
        used = list(dict.fromkeys(p for p in map(self.param_id, inputs) if p is not None))
        if name in VIEW_OPS and inputs and self.param_id(inputs[0]) is not None:
            for out in outputs:
                self.alias[id(out)] = self.param_id(inputs[0])
            return
        self._note_roles(name, args, kwargs, inputs)
        parents = tuple(dict.fromkeys(self.node_of[id(t)] for t in inputs if id(t) in self.node_of))
        if not (used or parents):
            return
        self.trace.nodes.append(_Node(len(self.trace.nodes), tuple(used), parents))
        for out in outputs:
            self.node_of[id(out)] = len(self.trace.nodes) - 1

    def _note(self, value: Any, role: str) -> None:
        pid = self.param_id(value)
        if pid is not None and role not in self.trace.roles.setdefault(pid, []):
            self.trace.roles[pid].append(role)

    def _note_roles(self, name: str, args: tuple, kwargs: dict, inputs: list[torch.Tensor]) -> None:
        """The roles implied by this call for the parameters among its arguments."""
        for position, keyword, role in ARGUMENT_ROLES.get(name, ()):
            self._note(args[position] if position < len(args) else kwargs.get(keyword), role)
        if name in MATRIX_PRODUCTS:
            matrices = inputs[1:] if name == "addmm" else inputs
            for tensor in matrices:
                if self.param_id(tensor) is not None and self.params[self.param_id(tensor)].dim() == 2:
                    self._note(tensor, "linear")
            if name == "addmm" and inputs and self.param_id(inputs[0]) is not None and _vector_like(inputs[0]):
                self._note(inputs[0], "bias")
        if name in ADDITIONS and len(inputs) == 2:
            for this, other in (inputs, inputs[::-1]):
                pid = self.param_id(this)
                if (pid is not None and self.param_id(other) is None and _vector_like(self.params[pid])
                        and other.numel() > this.numel()):
                    self._note(this, "bias")


def trace_forward(model: nn.Module, run: Callable[[nn.Module], torch.Tensor]) -> ForwardTrace:
    """Run ``run(model)`` (one forward pass returning the output tensor) and record what it did
    with each parameter of ``model``; exceptions of the forward pass propagate unchanged."""
    params = {id(p): p for p in model.parameters()}
    recorder = _Recorder(params)
    with recorder:
        output = run(model)
    if isinstance(output, torch.Tensor):
        recorder.trace.output = recorder.node_of.get(id(output))
    return recorder.trace


def forward_with_hooks(model: nn.Module, example: Any, handles: list[Any]) -> Any:
    """One no-grad forward pass of ``model`` on ``example`` while the hooks behind ``handles``
    watch it; the hooks are removed afterwards, whatever the pass raises, so a measurement
    (FLOPs, which modules run) never leaves the model changed."""
    try:
        with torch.no_grad():
            return call(model, example)
    finally:
        for handle in handles:
            handle.remove()
