"""A stepper that trains a pruned MLP sparsely: compressed matmuls, survivors-only optimizer.

For ticketlab's own :class:`~ticketlab.models.mlp.MLP` (Linear+ReLU chain, cross-entropy) the
step is written out by hand, without autograd, in a features-by-batch layout (``H`` is
[features, B]), so every sparse product is "sparse @ dense":

* forward      ``Z = W @ H + b`` with ``W`` in CSR (``torch.addmm`` on a CSR tensor);
* input grad   ``dH = W^T @ dZ`` with a second CSR of the transposed pattern whose values are
               gathered from ``W``'s each step (one ``index_select`` of the survivors);
* weight grad  only at surviving positions: ``torch.sparse.sampled_addmm(W, dZ, H^T)``;
* optimizer    the unit's own optimizer class and settings (fused Adam/AdamW/SGD) over flat
               vectors of survivors and the biases, so its arithmetic is the dense loop's.

A layer whose mask keeps more than :data:`SPARSE_BELOW` of its weights stays a dense matmul
(gradient masked; pruned weights and their moments stay exactly zero). Input features that no
surviving first-layer weight reads (MNIST's border pixels once IMP has pruned them) are dropped
physically: the training and evaluation inputs are gathered to the live columns once. Hidden
units whose outgoing weights are all pruned cost nothing in a CSR layer beyond their own
surviving incoming weights (their gradient is exactly zero there as in the dense loop, and the
optimizer still steps them with that zero gradient, so weight decay and moments from a rewind
point act on them exactly as in the dense loop).

Results equal the dense-masked :class:`~ticketlab.train.steppers.dense.SingleStepper` up to floating-point
reassociation (tested). ``sync`` scatters the survivors and their optimizer state back into the
dense model and the dense torch optimizer (pruned entries zero), so checkpoints, final weights
and resume are unchanged; the constructor reads them the same way (resume from any checkpoint).
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models.mlp import MLP
from ticketlab.train.steppers.base import Stepper, mean_loss_and_score

SPARSE_BELOW = 0.3  # a layer keeping at most this fraction of its weights runs as CSR


# Evaluation chunks are 4,096 examples wide, where dense GEMM is far more efficient than a CSR
# product: on full MNIST a LeNet unit's evaluations took 1.25-2.5 s as CSR against ~1.4 s dense
# between 21% and 10.8% kept (bench/imp_end_to_end.py). Layers above this evaluate dense.
EVAL_CSR_BELOW = 0.1


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    """A CSR tensor sharing ``values`` (built from valid indices: no checks, no beta warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


DENSE_UNIT = "the unit is dense (level 0)"


def sparse_ineligible(model: nn.Module, task, data, masks, device: torch.device,
                      autocast_dtype: torch.dtype | None = None) -> str | None:
    """Why the sparse stepper cannot train this unit (a short phrase), or None when it can."""
    if type(model) is not MLP:
        return f"the model is {type(model).__name__}, not one of ticketlab's built-in MLPs"
    if task.kind != "classification" or task.loss is not None or task.score is not None:
        return "the task is not the default classification (cross-entropy, accuracy)"
    if getattr(data, "x_train", None) is None:
        return "the data is streamed"
    if not isinstance(data.x_train, torch.Tensor):
        return "the inputs are several tensors (a tuple or dict)"
    if autocast_dtype is not None:
        return "bf16 autocast is on"
    if device.type != "cpu":
        return f"it runs on the CPU only (device {device})"
    weights = {f"layers.{n}.weight" for n, m in model.layers.named_children() if isinstance(m, nn.Linear)}
    other = sorted(set(masks or ()) - weights)
    if other:
        return f"it prunes only Linear weights, and the mask also covers {other[0]}"
    if not masks:
        return DENSE_UNIT
    return None


def same_optimizer(optimizer: torch.optim.Optimizer, params) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class and settings over ``params`` (no state)."""
    accepted = inspect.signature(type(optimizer)).parameters
    return type(optimizer)(params, **{k: v for k, v in optimizer.defaults.items() if k in accepted})


class _Layer:
    """One Linear layer: its survivors (``values``), bias and the matmuls over them."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, in_live: torch.Tensor | None):
        out_features, in_features = weight.shape
        self.weight, self.bias_param = weight, bias
        self.in_live = in_live  # original input columns this layer reads (None: all)
        cols = in_live if in_live is not None else torch.arange(in_features, device=weight.device)
        sub_mask = mask[:, cols] != 0
        self.density = float(sub_mask.float().mean()) if sub_mask.numel() else 0.0
        self.sparse = self.density <= SPARSE_BELOW
        self.shape = (out_features, cols.numel())
        with torch.no_grad():
            if self.sparse:
                rows, new_cols = sub_mask.nonzero(as_tuple=True)  # row-major: CSR order
                self.flat = rows * in_features + cols[new_cols]  # positions in the dense weight
                counts = torch.bincount(rows, minlength=out_features)
                crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
                self.values = weight.detach().reshape(-1)[self.flat].clone()
                self.csr = _csr(crow, new_cols, self.values, self.shape)  # aliases values
                # W^T's pattern: the same survivors sorted by (column, row)
                self.perm = torch.argsort(new_cols * out_features + rows)
                counts_t = torch.bincount(new_cols, minlength=self.shape[1])
                crow_t = torch.cat([counts_t.new_zeros(1), counts_t.cumsum(0)])
                self.values_t = self.values[self.perm]
                self.csr_t = _csr(crow_t, rows[self.perm], self.values_t,
                                                     (self.shape[1], out_features))
                self.mask = None
            else:
                grid = torch.arange(out_features, device=weight.device)[:, None] * in_features + cols[None, :]
                self.flat = grid.reshape(-1)
                self.mask = sub_mask.to(weight.dtype)
                self.values = weight.detach().reshape(-1)[self.flat].clone()
                self.dense = self.values.view(self.shape)
                self.dense.mul_(self.mask)  # as SingleStepper: pruned weights start at zero
            self.bias = bias.detach().clone()
        self.params = [self.values, self.bias]

    def forward(self, h: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
        """[out, B] pre-activations from [in, B] inputs (with ``matrix`` in place of the layer's own)."""
        if matrix is None:
            matrix = self.csr if self.sparse else self.dense
        return torch.addmm(self.bias[:, None], matrix, h)

    def eval_matrix(self) -> torch.Tensor:
        """The weight to evaluate wide batches with: CSR only where it beats dense GEMM there."""
        if self.sparse and self.density > EVAL_CSR_BELOW:
            return self.csr.to_dense()
        return self.csr if self.sparse else self.dense

    def backward(self, h: torch.Tensor, dz: torch.Tensor, need_input_grad: bool):
        """Gradients of ``values`` and ``bias`` from ``dz`` [out, B], and dH [in, B] (or None)."""
        bias_grad = dz.sum(1)
        if self.sparse:
            grad = torch.sparse.sampled_addmm(self.csr, dz, h.t(), beta=0.0).values()
            if not need_input_grad:
                return grad, bias_grad, None
            torch.index_select(self.values, 0, self.perm, out=self.values_t)
            return grad, bias_grad, torch.sparse.mm(self.csr_t, dz)
        grad = (dz @ h.t()).mul_(self.mask).view(-1)
        return grad, bias_grad, (self.dense.t() @ dz if need_input_grad else None)

    def after_step(self) -> None:
        if self.mask is not None:
            self.dense.mul_(self.mask)


class SparseStepper(Stepper):
    """The :class:`~ticketlab.train.steppers.base.Stepper` of one pruned MLP trained on its survivors only."""

    size = 1
    scores_other_weights = True

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, task, data,
                 masks: dict[str, torch.Tensor], autocast_dtype: torch.dtype | None = None,
                 live_x: torch.Tensor | None = None):
        device = next(model.parameters()).device
        why = sparse_ineligible(model, task, data, masks, device, autocast_dtype)
        if why:
            raise ConfigError(f"--stepper sparse cannot train this unit: {why}; use --stepper dense or auto")
        self.model, self.dense_optimizer, self.task = model, optimizer, task
        linears = [m for m in model.layers if isinstance(m, nn.Linear)]
        names = [f"layers.{n}.weight" for n, m in model.layers.named_children() if isinstance(m, nn.Linear)]
        first_mask = masks.get(names[0], torch.ones_like(linears[0].weight))
        live = (first_mask != 0).any(0).nonzero().flatten()
        self.live_inputs = live
        self.layers = [
            _Layer(m.weight, m.bias, masks.get(n, torch.ones_like(m.weight)), live if i == 0 else None)
            for i, (m, n) in enumerate(zip(linears, names))
        ]
        self.names = names
        # the training inputs, live columns only, gathered once (``live_x``: another stepper's, same masks)
        self.x = live_x if live_x is not None else self._inputs(data.x_train).contiguous()
        self.y = data.y_train
        # the same optimizer class and settings as the unit's, over survivors and biases
        self.params = [p for layer in self.layers for p in layer.params]
        self.optimizer = same_optimizer(optimizer, self.params)
        self._fused_state = None  # set after the first step: the fused Adam(W) state lists, or False
        self._load_optimizer_state()

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).index_select(1, self.live_inputs)

    # ------------------------------------------------------------------ state in and out
    def _pairs(self):
        """(sparse tensor, dense parameter, positions in the dense parameter or None for a bias)."""
        for layer in self.layers:
            yield layer.values, layer.weight, layer.flat
            yield layer.bias, layer.bias_param, None

    def _load_optimizer_state(self) -> None:
        for mine, dense, flat in self._pairs():
            state = self.dense_optimizer.state.get(dense)
            if not state:
                continue
            own = self.optimizer.state[mine]
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == dense.shape and key != "step":
                    own[key] = value.detach().clone() if flat is None else value.detach().reshape(-1)[flat].clone()
                else:
                    own[key] = value.clone() if isinstance(value, torch.Tensor) else value

    @torch.no_grad()
    def sync(self, k: int = 0) -> None:
        """Write survivors, biases and optimizer state into the dense model and optimizer."""
        for mine, dense, flat in self._pairs():
            if flat is None:
                dense.copy_(mine)
            else:
                dense.zero_().view(-1).index_copy_(0, flat, mine)
            state = self.optimizer.state.get(mine)
            if not state:
                continue
            out = {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key != "step" and value.shape == mine.shape:
                    if flat is None:
                        out[key] = value.clone()
                    else:
                        out[key] = torch.zeros_like(dense).view(-1).index_copy_(0, flat, value).view_as(dense)
                else:
                    out[key] = value.clone() if isinstance(value, torch.Tensor) else value
            self.dense_optimizer.state[dense] = out

    # ------------------------------------------------------------------ stepping
    def set_lr(self, lr: float) -> None:
        for optimizer in (self.optimizer, self.dense_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _forward(self, h: torch.Tensor, matrices: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Every layer's input ([features, B]) and, last, the logits [classes, B]."""
        hs = [h]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer.forward(hs[-1], matrices[i] if matrices is not None else None)
            hs.append(z if i == last else z.relu_())
        return hs

    @torch.no_grad()
    def step(self, batch) -> torch.Tensor:
        rows = batch[0]
        hs = self._forward(self.x.index_select(0, rows).t().contiguous())
        target = self.y[rows]
        log_p = hs[-1].log_softmax(0)  # [C, B]
        columns = torch.arange(target.shape[0], device=target.device)
        loss = log_p[target, columns].mean().neg_()
        dz = log_p.exp_()
        dz[target, columns] -= 1.0
        dz.div_(target.shape[0])
        grads: list[torch.Tensor] = []
        for i in range(len(self.layers) - 1, -1, -1):
            grad, bias_grad, dh = self.layers[i].backward(hs[i], dz, need_input_grad=i > 0)
            grads[:0] = [grad, bias_grad]
            if i > 0:
                dz = torch.ops.aten.threshold_backward(dh, hs[i], 0)  # ReLU's gradient (zero at 0)
        self._optimizer_step(grads)
        for layer in self.layers:
            layer.after_step()
        return loss

    def _optimizer_step(self, grads: list[torch.Tensor]) -> None:
        """The optimizer's step with these gradients: fused Adam(W)'s kernel called directly once
        its state exists (the arithmetic of ``Adam.step``, without its per-step Python), else
        ``optimizer.step()``."""
        if not self._fused_state:  # the first step, or not a plain fused Adam(W)
            for param, grad in zip(self.params, grads):
                param.grad = grad
            self.optimizer.step()
            for param in self.params:
                param.grad = None
            if self._fused_state is None:
                self._fused_state = self._fused_adam_state()
            return
        group = self.optimizer.param_groups[0]
        exp_avgs, exp_avg_sqs, steps = self._fused_state
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(self.params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
               grad_scale=None, found_inf=None)

    def _fused_adam_state(self):
        """(exp_avgs, exp_avg_sqs, steps) when the optimizer is a plain fused Adam(W), else False."""
        optimizer, group = self.optimizer, self.optimizer.param_groups[0]
        plain = (isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1 and group.get("fused")
                 and not group.get("amsgrad") and not group.get("maximize") and not group.get("capturable")
                 and not isinstance(group["lr"], torch.Tensor)
                 and (type(optimizer) is torch.optim.Adam or group.get("decoupled_weight_decay")))
        if not plain:
            return False
        states = [optimizer.state[p] for p in self.params]
        return ([s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [s["step"] for s in states])

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        matrices = [layer.eval_matrix() for layer in self.layers]
        return mean_loss_and_score(batches, lambda x: self._forward(self._inputs(x).t(), matrices)[-1].t(),
                                   self.task, True, device=None)  # CPU only; None: as before, the default device

    @torch.no_grad()
    def evaluate_weights(self, k: int, weights: dict[str, torch.Tensor], batches) -> tuple[torch.Tensor, torch.Tensor]:
        """``evaluate`` with the survivors and biases read from ``weights`` (dense tensors, as the
        model holds them); the stepper's own come back after."""
        own = [(layer.values.clone(), layer.bias.clone()) for layer in self.layers]
        try:
            for layer, name in zip(self.layers, self.names):
                layer.values.copy_(weights[name].reshape(-1)[layer.flat])
                layer.bias.copy_(weights[name.removesuffix("weight") + "bias"])
            return self.evaluate(batches)
        finally:
            for layer, (values, bias) in zip(self.layers, own):
                layer.values.copy_(values)
                layer.bias.copy_(bias)

    def finite(self) -> torch.Tensor:
        flags = [torch.isfinite(p).all() for layer in self.layers for p in layer.params]
        return torch.stack(flags).all().float().view(1)
