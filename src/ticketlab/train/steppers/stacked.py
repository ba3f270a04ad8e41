"""The stacked stepper: K replicates stacked along a new leading dimension and run as one
``vmap(functional_call)`` (or, for ticketlab's MLPs, a chain of ``baddbmm``).

K small matrix products become one batched product, K optimizer steps one fused step. Each
replicate keeps its own weights, mask, optimizer state and batches; the summed loss gives each
exactly the gradient of its own mean loss; Adam and SGD are elementwise. So results equal
sequential training up to floating-point reassociation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ticketlab.models.mlp import MLP
from ticketlab.train.optim import make_optimizer
from ticketlab.train.steppers.base import MaskedOptimizer, mean_loss_and_score
from ticketlab.train.task import Task, prediction


def randomness_in(model: nn.Module) -> str | None:
    """The first module that draws random numbers in training mode (Dropout and kin), or None."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{name or 'the model'} ({type(module).__name__}, p={module.p})"
        if isinstance(module, nn.MultiheadAttention) and module.dropout > 0:
            return f"{name} (attention dropout {module.dropout})"
    return None


class StackedStepper(MaskedOptimizer):
    """K replicates' parameters, buffers, masks and optimizer state stacked on dim 0.

    ``models``/``optimizers``/``masks`` are each replicate's own objects, which ``sync`` fills
    back for checkpoints and final weights.
    """

    def __init__(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer],
                 masks: Sequence[dict[str, torch.Tensor] | None], task: Task, x: torch.Tensor, y: torch.Tensor,
                 train_config, device: torch.device) -> None:
        self.models, self.optimizers, self.task = list(models), list(optimizers), task
        self.size = len(self.models)
        self.x, self.y = x, y
        self.template = self.models[0]
        self.names = [n for n, _ in self.template.named_parameters()]
        # In the MLP fast path Linear weights are kept as [K, in, out], so that the forward is
        # baddbmm(b, h, W) and the weight gradient arrives in the parameter's own layout; with
        # [K, out, in] autograd copies a transposed gradient back every step (~10% of a step).
        self.transposed = self._mlp_weight_names()
        self.params = {
            n: self._internal(n, torch.stack([dict(m.named_parameters())[n].detach() for m in self.models])).requires_grad_()
            for n in self.names
        }
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in self.models]) for n, _ in self.template.named_buffers()
        }
        mask_names = list(masks[0] or {})
        self.mask_values = [self._internal(n, torch.stack([m[n] for m in masks])) for n in mask_names]
        self.masked = [self.params[n] for n in mask_names]
        self.optimizer = make_optimizer(self.params.values(), train_config, device)
        self._stack_optimizer_state()
        self.linear_layers = (
            [(self.params[n], self.params[n.removesuffix("weight") + "bias"]) for n in self.transposed]
            if self.transposed else None
        )
        self.default_classification = task.kind == "classification" and task.loss is None and task.score is None
        self.apply_masks_()
        self.template.train()

    # ------------------------------------------------------------------ layout
    def _internal(self, name: str, stacked: torch.Tensor) -> torch.Tensor:
        return stacked.transpose(1, 2).contiguous() if name in self.transposed else stacked

    def _external(self, name: str, piece: torch.Tensor) -> torch.Tensor:
        return piece.T.contiguous() if name in self.transposed else piece.clone()

    def _mlp_weight_names(self) -> list[str]:
        if type(self.template) is not MLP:
            return []
        return [f"layers.{name}.weight" for name, module in self.template.layers.named_children()
                if isinstance(module, nn.Linear)]

    def _stack_optimizer_state(self) -> None:
        """Carry each replicate's optimizer state (late rewinding, resume) into the stacked optimizer."""
        first_params = dict(self.models[0].named_parameters())
        for name in self.names:
            state = self.optimizers[0].state.get(first_params[name])
            if not state:
                continue
            stacked = self.optimizer.state[self.params[name]]
            for key, value in state.items():
                per_unit = [o.state[dict(m.named_parameters())[name]][key] for m, o in zip(self.models, self.optimizers)]
                stacked[key] = value.clone() if key == "step" else self._internal(name, torch.stack(per_unit))

    # ------------------------------------------------------------------ stepping
    def forward(self, x: torch.Tensor, shared_input: bool) -> torch.Tensor:
        """Predictions of every replicate: x is [K, B, ...] (own batches) or [B, ...] (shared)."""
        if self.linear_layers is not None:
            return self._forward_mlp(x, shared_input)

        def one(params, buffers, inputs):
            return prediction(functional_call(self.template, (params, buffers), (inputs,)))

        return vmap(one, in_dims=(0, 0, None if shared_input else 0))(self.params, self.buffers, x)

    def _forward_mlp(self, x: torch.Tensor, shared_input: bool) -> torch.Tensor:
        """ticketlab's own MLPs as a chain of ``baddbmm``: the same maths as vmap, less dispatch."""
        h = x.flatten(1) if shared_input else x.flatten(2)
        if shared_input:
            h = h.expand(self.size, -1, -1)
        last = len(self.linear_layers) - 1
        for i, (weight_in_out, bias) in enumerate(self.linear_layers):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight_in_out)
            if i < last:
                h = h.relu()
        return h

    def step(self, index: torch.Tensor) -> torch.Tensor:
        pred = self.forward(self.x[index], shared_input=False)  # [K, B, ...]
        target = self.y[index]
        if self.default_classification and pred.dim() == 3:
            per_example = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none")
            losses = per_example.view(self.size, -1).mean(1)
        else:
            losses = vmap(self.task.loss_of)(pred, target)
        self.descend(losses.sum())
        return losses.detach()

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        self.template.eval()
        result = mean_loss_and_score(batches, lambda x: self.forward(x, shared_input=True), self.task,
                                     self.default_classification, self.x.device, replicates=self.size)
        self.template.train()
        return result

    def finite(self) -> torch.Tensor:
        flags = [torch.isfinite(p.detach()).flatten(1).all(1) for p in self.params.values()]
        return torch.stack(flags).all(0).float()

    def sync(self, k: int) -> None:
        """Copy replicate k's slice back into its own model and optimizer."""
        model, optimizer = self.models[k], self.optimizers[k]
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                own[name].copy_(self._external(name, self.params[name][k]))
            for name, buffer in model.named_buffers():
                buffer.copy_(self.buffers[name][k])
        for name in self.names:
            stacked = self.optimizer.state.get(self.params[name])
            if stacked:
                optimizer.state[own[name]] = {
                    key: (v.clone() if key == "step" else self._external(name, v[k])) for key, v in stacked.items()
                }
