"""Sparse-step benchmark: ticketlab's SparseStepper vs the dense-masked SingleStepper.

LeNet-300-100 on ticketlab's ``mnist5k`` (3,500 training images), batch 60, fused Adam
(lr 1.2e-3), one torch thread. Masks are IMP-like: train the dense network, then repeatedly
prune 20% of each hidden layer (10% of the output layer) by magnitude of the trained weights and
train the survivors a little more, so that MNIST's border pixels lose all their weights as in
real IMP. Each row is one level: both steppers start from the same weights and mask and are
driven by ticketlab's own loop (``run_loop``, evaluations and checkpoints switched off), in
interleaved rounds; the ratio is the median of the per-round paired ratios, so background load
hits both sides alike. ``--profile`` prints where the sparse step spends its time at 10%.

    .venv/bin/python bench/sparse_step.py            # full (~2 min)
    .venv/bin/python bench/sparse_step.py --quick    # smoke check (< 1 min)
"""

from __future__ import annotations

import argparse
import copy
import time

import _common  # noqa: F401  (sys.path for the src layout)
import torch
import torch.nn.functional as F

from _common import median, print_availability, print_machine, spread
from ticketlab.config import PruneConfig, TrainConfig
from ticketlab.data import load_dataset
from ticketlab.train.state import TrainState
from ticketlab.train.loop import run_loop
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.train.optim import make_optimizer
from ticketlab.pruning.magnitude import magnitude_prune
from ticketlab.train.steppers.sparse import SparseStepper, sparse_ineligible
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.train.task import Task
from ticketlab.train.events import Events

BATCH = 60
LR = 1.2e-3
HUGE = 10**9
# IMP level -> % remaining of LeNet-300-100 at 20%/10% per level: 100, 51.3, 21.1, 10.9, 7.0, 3.6, 1.9
LEVELS = (0, 3, 7, 10, 12, 15, 18)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps per side per round (default 300)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up steps per side (default 50)")
    p.add_argument("--train-steps", type=int, default=150, help="training steps between pruning rounds (default 150)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="profile the sparse step at ~10%% remaining")
    p.add_argument("--quick", action="store_true", help="smoke mode: 100 steps x 3 rounds")
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds, args.warmup, args.train_steps = 100, 3, 20, 60
    return args


class NoEvents(Events):
    """Nothing happens at the loop's events (the base class's defaults)."""


class Side:
    """One stepper class on its own copy of the model, driven by ticketlab's loop."""

    def __init__(self, name, cls, model, data, masks):
        self.name, self.data = name, data
        self.config = TrainConfig(batch_size=BATCH, lr=LR, iterations=HUGE, eval_every=HUGE, checkpoint_every=HUGE)
        self.optimizer = make_optimizer(model.parameters(), self.config, data.x_train.device)
        self.state = TrainState(step=0, history=[{"step": 0, "val_loss": 0.0}])  # skips the loop's first evaluation
        self.stepper = cls(model, self.optimizer, Task().bind(data.y_train), data, masks)
        self.stepper.evaluate = lambda batches: (torch.zeros(1), torch.zeros(1))  # time steps only

    def run(self, steps: int) -> None:
        run_loop(self.stepper, self.data, self.config, [self.state], [NoEvents()], self.state.step + steps, [0])
        del self.state.history[1:]


def conv_flops_bound(conv: torch.nn.Module, data) -> None:
    """What a sparse path for conv2's Linear layers alone could give: the convolutions' share of
    the forward FLOPs (measured by ticketlab.evidence.flops) bounds it (Amdahl), since PyTorch has no
    sparse convolution kernel on CPU to run them on."""
    from ticketlab.evidence.flops import forward_flops

    flops = forward_flops(conv, data.x_train[:1])
    params = dict(conv.named_parameters())
    conv_part = sum(f for name, f in flops.per_weight.items() if params[name].dim() > 2)
    share = conv_part / flops.total
    print(f"conv2 forward: {flops.total / 1e6:.1f} MFLOP per example, {100 * share:.1f}% of it in its convolutions. "
          "Even free sparse Linear layers at d of their weights kept would bound a conv2 step's speedup at "
          "1 / (conv share + (1 - conv share) d): "
          + ", ".join(f"{1 / (share + (1 - share) * d):.2f}x at {100 * d:.1f}%" for d in (0.211, 0.036)) + ".\n")


def imp_masks(data, train_steps: int) -> tuple[dict[str, torch.Tensor], dict[int, Mask]]:
    """The initial weights and an IMP-like mask at every level in LEVELS (trained, pruned, repeat)."""
    torch.manual_seed(0)
    model = build_model("lenet_300_100", data.input_shape, data.num_classes)
    init = copy.deepcopy(model.state_dict())
    names = [n for n, _ in model.named_parameters() if n.endswith("weight")]
    mask = Mask({n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n in names})
    prune = PruneConfig()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    generator = torch.Generator().manual_seed(0)
    masks = {}
    for level in range(max(LEVELS) + 1):
        if level in LEVELS:
            masks[level] = mask
        floats = [mask[n].float() for n in names]
        params = dict(model.named_parameters())
        for _ in range(train_steps if level else 4 * train_steps):
            rows = torch.randint(0, data.x_train.shape[0], (BATCH,), generator=generator)
            loss = F.cross_entropy(model(data.x_train[rows]), data.y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                torch._foreach_mul_([params[n] for n in names], floats)
        mask = magnitude_prune(dict(model.named_parameters()), mask, prune, output=names[-1])
    return init, masks


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    print_machine("sparse step: SparseStepper vs dense-masked SingleStepper (LeNet-300-100, batch 60, Adam)")
    data = load_dataset("mnist5k")
    start = time.perf_counter()
    init, masks = imp_masks(data, args.train_steps)
    print(f"IMP-like masks made in {time.perf_counter() - start:.1f} s "
          f"({args.train_steps} training steps between pruning rounds)")
    print(f"{args.steps} steps per side per round, {args.rounds} interleaved rounds, {args.warmup} warm-up steps\n")

    rows = []
    for level in LEVELS:
        mask = masks[level]
        floats = {n: m.float() for n, m in mask.items()}
        sides = []
        for name, cls in (("dense", SingleStepper), ("sparse", SparseStepper)):
            model = build_model("lenet_300_100", data.input_shape, data.num_classes)
            model.load_state_dict(init)
            sides.append(Side(name, cls, model, data, floats if level else None) if level or name == "dense"
                         else Side(name, cls, model, data, {n: torch.ones_like(m) for n, m in floats.items()}))
        sparse = sides[1].stepper
        live_inputs = sparse.live_inputs.numel()
        layout = "/".join("csr" if layer.sparse else "dense" for layer in sparse.layers)
        for side in sides:
            side.run(args.warmup)
        times = {s.name: [] for s in sides}
        for r in range(args.rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                t0 = time.perf_counter()
                side.run(args.steps)
                times[side.name].append(time.perf_counter() - t0)
        ratios = [d / s for d, s in zip(times["dense"], times["sparse"])]
        rows.append((level, 100 * mask.fraction_remaining(), live_inputs, layout,
                     median([args.steps / t for t in times["dense"]]),
                     median([args.steps / t for t in times["sparse"]]), ratios))

    print("| level | % remaining | live inputs | layers | dense-masked steps/s | sparse steps/s | "
          "sparse / dense (median paired) | range | target |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---|")
    verdicts = []
    for level, pct, live, layout, dense_rate, sparse_rate, ratios in rows:
        target = 2.0 if pct <= 3.7 else 1.3 if 9 <= pct <= 11 else None
        mark = ""
        if target:
            met = median(ratios) >= target
            verdicts.append(met)
            mark = f">= {target}x {'MET' if met else 'NOT MET'}"
        print(f"| {level} | {pct:.1f} | {live} | {layout} | {dense_rate:.0f} | {sparse_rate:.0f} | "
              f"{median(ratios):.2f}x | {spread(ratios)} | {mark} |")

    conv = build_model("conv2", data.input_shape, data.num_classes)
    why = sparse_ineligible(conv, Task().bind(data.y_train), data, {"x": None}, torch.device("cpu"))
    print(f"\nconv2 (and every non-MLP model): no sparse row; {why}, so it always trains on the dense path.")
    conv_flops_bound(conv, data)

    if args.profile:
        level = 10
        model = build_model("lenet_300_100", data.input_shape, data.num_classes)
        model.load_state_dict(init)
        side = Side("sparse", SparseStepper, model, data, {n: m.float() for n, m in masks[level].items()})
        side.run(args.warmup)
        with torch.profiler.profile() as prof:
            side.run(args.steps)
        print(f"\nprofile of {args.steps} sparse steps at level {level} "
              f"({100 * masks[level].fraction_remaining():.1f}% remaining):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    print("after the run:", end=" ")
    print_availability()


if __name__ == "__main__":
    main()
