"""Train K independent units as one batched computation.

For tiny models (an MLP on MNIST-1D) a training step is a handful of small kernels, and the
time goes to per-step overhead: Python, the dispatcher, the optimizer loop. Stacking K
replicates' parameters along a new leading dimension and running them through
``torch.func.vmap(functional_call(...))`` turns K small matrix products into one batched
product (``bmm``), and K optimizer steps into one fused step over stacked tensors.

It is exact in what matters: each replicate keeps its own weights, mask, optimizer state and
data order (its own permutation each epoch); the summed loss gives each replicate exactly the
gradient of its own mean loss; Adam and SGD are elementwise, so one optimizer over stacked
tensors performs the K separate updates. Results equal sequential training up to
floating-point reassociation in the batched matrix products.

Units in a batch must start at the same iteration and train for the same length (the
scheduler groups them so); they can be of any arm and level. Checkpoints, rewind points and
final files are written per unit, through the same hooks as sequential training, by copying
each replicate's slice back into its own model and optimizer.

Divergence is checked as in ``train`` (at evaluations, and before checkpoints and rewind
captures, where the loop syncs anyway), per replicate: a replicate whose loss or weights go
non-finite stops being recorded, checkpointed or captured at once, and ends as diverged;
its slice keeps being computed until the batch ends (the others' arithmetic does not depend
on it: the summed loss gives each replicate only its own gradient), and nothing of it is saved.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ticketlab.config import Config, TrainConfig
from ticketlab.data import Dataset
from ticketlab.models.mlp import MLP
from ticketlab.optim import learning_rate, lr_change_points, make_optimizer
from ticketlab.train import EVAL_CHUNK, epoch_permutation, non_finite, steps_per_epoch
from ticketlab.units import PreparedUnit, Unit, experiment_dataset, finish_unit, prepare_unit


class StackedUnits:
    """K prepared units' parameters, buffers, masks and optimizer state, stacked on dim 0."""

    def __init__(self, units: Sequence[PreparedUnit], train_config: TrainConfig) -> None:
        self.units = list(units)
        self.template = units[0].model
        models = [u.model for u in units]
        self.names = [n for n, _ in self.template.named_parameters()]
        # In the MLP fast path Linear weights are kept as [K, in, out], so that the forward is
        # baddbmm(b, h, W) and the weight gradient arrives in the parameter's own layout; with
        # [K, out, in] autograd copies a transposed gradient back every step (~10% of a step).
        self.transposed = self._mlp_weight_names()
        self.params = {
            n: self._internal(n, torch.stack([dict(m.named_parameters())[n].detach() for m in models])).requires_grad_()
            for n in self.names
        }
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in models]) for n, _ in self.template.named_buffers()
        }
        masked = units[0].masks or {}
        self.mask_names = list(masked)
        self.masks = [self._internal(n, torch.stack([u.masks[n] for u in units])) for n in self.mask_names]
        self.masked_params = [self.params[n] for n in self.mask_names]
        self.optimizer = make_optimizer(self.params.values(), train_config, units[0].device)
        self._stack_optimizer_state()
        self.linear_layers = self._find_linear_layers()

    def _internal(self, name: str, stacked: torch.Tensor) -> torch.Tensor:
        """A stacked [K, ...] tensor in the layout used here (see ``transposed``)."""
        return stacked.transpose(1, 2).contiguous() if name in self.transposed else stacked

    def _external(self, name: str, piece: torch.Tensor) -> torch.Tensor:
        """One replicate's slice back in the module's own layout."""
        return piece.T.contiguous() if name in self.transposed else piece.clone()

    def _stack_optimizer_state(self) -> None:
        """Carry each unit's optimizer state (late rewinding, resume) into the stacked optimizer."""
        first = self.units[0]
        first_params = dict(first.model.named_parameters())
        for name in self.names:
            state = first.optimizer.state.get(first_params[name])
            if not state:
                continue
            stacked = self.optimizer.state[self.params[name]]
            for key, value in state.items():
                per_unit = [u.optimizer.state[dict(u.model.named_parameters())[name]][key] for u in self.units]
                stacked[key] = value.clone() if key == "step" else self._internal(name, torch.stack(per_unit))

    def finite_flags(self) -> torch.Tensor:
        """[K] float: 1.0 where all of replicate k's parameters are finite (no host sync)."""
        flags = [torch.isfinite(p.detach()).flatten(1).all(1) for p in self.params.values()]
        return torch.stack(flags).all(0).float()

    def apply_masks_(self) -> None:
        if self.masked_params:
            with torch.no_grad():
                torch._foreach_mul_(self.masked_params, self.masks)

    def forward(self, x: torch.Tensor, shared_input: bool) -> torch.Tensor:
        """Logits of every replicate: x is [K, B, ...] (own batches) or [B, ...] (shared)."""
        if self.linear_layers is not None:
            return self._forward_mlp(x, shared_input)

        def one(params, buffers, inputs):
            return functional_call(self.template, (params, buffers), (inputs,))

        return vmap(one, in_dims=(0, 0, None if shared_input else 0))(self.params, self.buffers, x)

    def _forward_mlp(self, x: torch.Tensor, shared_input: bool) -> torch.Tensor:
        """ticketlab's own MLPs as a chain of ``baddbmm``: the same maths as vmap, less dispatch."""
        k = len(self.units)
        h = x.flatten(1) if shared_input else x.flatten(2)
        if shared_input:
            h = h.expand(k, -1, -1)
        last = len(self.linear_layers) - 1
        for i, (weight_in_out, bias) in enumerate(self.linear_layers):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight_in_out)
            if i < last:
                h = h.relu()
        return h

    def _mlp_weight_names(self) -> list[str]:
        """Names of the Linear weights if the template is a ticketlab MLP (fast path), else []."""
        if type(self.template) is not MLP:
            return []
        return [f"layers.{name}.weight" for name, module in self.template.layers.named_children()
                if isinstance(module, nn.Linear)]

    def _find_linear_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The stacked ([K, in, out] weight, bias) of each Linear on the fast path, else None."""
        if not self.transposed:
            return None
        return [(self.params[n], self.params[n.removesuffix("weight") + "bias"]) for n in self.transposed]

    def sync_unit(self, k: int) -> None:
        """Copy replicate k's slice back into its own model and optimizer (for checkpoint/final files)."""
        unit = self.units[k]
        own = dict(unit.model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                own[name].copy_(self._external(name, self.params[name][k]))
            for name, buffer in unit.model.named_buffers():
                buffer.copy_(self.buffers[name][k])
        for name in self.names:
            stacked = self.optimizer.state.get(self.params[name])
            if stacked:
                unit.optimizer.state[own[name]] = {
                    key: (v.clone() if key == "step" else self._external(name, v[k])) for key, v in stacked.items()
                }


@torch.no_grad()
def _evaluate_all(stack: StackedUnits, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-replicate (mean loss, accuracy) on a shared evaluation set, as [K] tensors."""
    stack.template.eval()
    k = len(stack.units)
    loss = torch.zeros(k, device=x.device)
    correct = torch.zeros(k, device=x.device)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = stack.forward(x[start : start + EVAL_CHUNK], shared_input=True)  # [K, N, C]
        target = y[start : start + EVAL_CHUNK]
        loss += F.cross_entropy(logits.float().transpose(1, 2), target.expand(k, -1), reduction="none").sum(1)
        correct += (logits.argmax(2) == target).sum(1)
    stack.template.train()
    n = max(1, x.shape[0])
    return loss / n, correct / n


def _record_evals(stack: StackedUnits, data: Dataset, step: int, train_losses: list[float] | None) -> None:
    """Append an evaluation to each live unit's history; mark the ones that went non-finite."""
    val_loss, val_acc = _evaluate_all(stack, data.x_val, data.y_val)
    test_loss, test_acc = _evaluate_all(stack, data.x_test, data.y_test)
    table = torch.stack([val_loss, val_acc, test_loss, test_acc, stack.finite_flags()]).T.tolist()  # one host sync
    for k, (unit, values) in enumerate(zip(stack.units, table)):
        if unit.state.diverged:
            continue
        record = dict(zip(("val_loss", "val_acc", "test_loss", "test_acc"), values[:4]))
        record["step"] = step
        record["train_loss"] = train_losses[k] if train_losses is not None else None
        unit.state.step = step
        unit.state.history.append(record)
        unit.state.diverged = non_finite(record, values[4] == 1.0)
        unit.hooks.on_eval(unit.state)


def _save_points(stack: StackedUnits, loss_acc: torch.Tensor, loss_count: int, done: int, end: int,
                 capture: frozenset[int], checkpoint_every: int) -> None:
    """Capture the rewind point and write checkpoints of the live units whose state is finite."""
    sums, finite = torch.stack([loss_acc, stack.finite_flags()]).tolist()
    for k, unit in enumerate(stack.units):
        if unit.state.diverged:
            continue
        if not math.isfinite(sums[k]) or finite[k] != 1.0:
            unit.state.diverged = "training loss or weights"
            continue
        stack.sync_unit(k)
        unit.state.loss_sum, unit.state.loss_count = sums[k], loss_count
        if done in capture:
            unit.hooks.on_capture(unit.state)
        if done % checkpoint_every == 0 and done < end:
            unit.hooks.on_checkpoint(unit.state)


def train_batched(units: Sequence[PreparedUnit], data: Dataset, train_config: TrainConfig) -> None:
    """Train ``units`` (same start step and end) together; their states end up as if trained alone."""
    start, end = units[0].state.step, units[0].end
    if any(u.state.step != start or u.end != end for u in units):
        raise ValueError("batched units must share their start step and training length")
    stack = StackedUnits(units, train_config)
    stack.apply_masks_()
    stack.template.train()
    if not units[0].state.history:
        _record_evals(stack, data, start, None)

    device = data.x_train.device
    n = data.x_train.shape[0]
    batch = min(train_config.batch_size, n)
    per_epoch = steps_per_epoch(data, batch)
    lr_points = set(lr_change_points(train_config, start, end))
    loss_acc = torch.tensor([u.state.loss_sum for u in units], device=device)
    loss_count = units[0].state.loss_count
    capture = units[0].capture_steps
    epoch, order = -1, None

    for step in range(start, end):
        if step in lr_points:
            for group in stack.optimizer.param_groups:
                group["lr"] = learning_rate(train_config, step)
        step_epoch, offset = divmod(step, per_epoch)
        if step_epoch != epoch:
            epoch = step_epoch
            order = torch.stack([epoch_permutation(u.data_seed, epoch, n, device) for u in units])
        index = order[:, offset * batch : (offset + 1) * batch]  # [K, B]: each replicate's own batch
        logits = stack.forward(data.x_train[index], shared_input=False)  # [K, B, C]
        per_example = F.cross_entropy(logits.flatten(0, 1), data.y_train[index].flatten(), reduction="none")
        losses = per_example.view(len(units), -1).mean(1)
        stack.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        stack.optimizer.step()
        stack.apply_masks_()
        loss_acc += losses.detach()
        loss_count += 1

        done = step + 1
        if done % train_config.eval_every == 0 or done == end:
            train_losses = (loss_acc / loss_count).tolist()
            loss_acc.zero_()
            loss_count = 0
            _record_evals(stack, data, done, train_losses)
        for unit in units:
            if not unit.state.diverged:
                unit.state.step = done
        if done in capture or (done % train_config.checkpoint_every == 0 and done < end):
            _save_points(stack, loss_acc, loss_count, done, end, capture, train_config.checkpoint_every)
        if all(unit.state.diverged for unit in units):
            break
    for k, unit in enumerate(units):
        if not unit.state.diverged:
            stack.sync_unit(k)
        unit.state.loss_sum, unit.state.loss_count = 0.0, 0


def run_units_batched(config: Config, store_dir: str, units: Sequence[Unit], device: str = "cpu") -> list[tuple[Unit, dict]]:
    """Run ``units``: those sharing (start step, length) train together; return their summaries."""
    results: list[tuple[Unit, dict]] = []
    groups: dict[tuple[int, int, frozenset[int], bool], list[PreparedUnit]] = defaultdict(list)
    for unit in units:
        prepared = prepare_unit(config, store_dir, unit, device)
        if isinstance(prepared, dict):
            results.append((unit, prepared))
        else:
            key = (prepared.state.step, prepared.end, prepared.capture_steps, prepared.masks is None)
            groups[key].append(prepared)
    for group in groups.values():
        data = experiment_dataset(config, group[0].device)
        train_batched(group, data, config.train)
        results.extend((p.unit, finish_unit(config, p)) for p in group)
    return results
