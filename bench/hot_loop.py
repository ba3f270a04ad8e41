"""Hot-loop benchmark: ticketlab's masked IMP training step vs plain PyTorch loops.

Sides, all on the same LeNet-300-100 initial weights, the same MNIST-5k training tensors
(3,500 examples), batch 60, fused Adam (lr 1.2e-3), one torch thread:

  ours        ticketlab's one training loop (loop.run_loop with the SingleStepper) with ~50%
              sparse masks (re-masked after every step),
              eval_every/checkpoint_every huge; the one evaluation the loop always does at the
              end of a call is timed separately and reported (and a corrected figure printed)
  bare        a hand-written loop: tensor-resident data, one randperm per epoch, index
              slicing, zero_grad(set_to_none=True), no masks
  bare+mask   the bare loop plus the same torch._foreach_mul_ re-masking (attributes the gap)
  user loop   the bare loop driven through ticketlab's user-loop API (``run(train=fn)``): the
              user's own fused Adam, ``unit.step(loss)`` after each step (re-mask, count, rewind
              check, loss accumulated on the device) and the ``unit.eval_due`` check
  dataloader  a conventional DataLoader(TensorDataset(x, y), batch_size=60, shuffle=True) loop

Repeats are interleaved (the order rotates every round) and ratios are the median of the
per-round paired ratios, so background load hits every side alike.

    .venv/bin/python bench/hot_loop.py            # full (~1 min)
    .venv/bin/python bench/hot_loop.py --quick    # smoke check (< 1 min)
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sys.path for the src layout)
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from _common import print_availability, median, print_machine, spread
from ticketlab.config import PruneConfig, TrainConfig
from ticketlab.data import load_dataset
from ticketlab.masks import prunable_names
from ticketlab.models import build_model
from ticketlab.train.optim import make_optimizer
from ticketlab.train.state import TrainState
from ticketlab.train.loop import eval_batches, run_loop
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.train.task import Task
from ticketlab.train.events import Events

BATCH = 60
LR = 1.2e-3
HUGE = 10**9


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000, help="training steps per side per round (default 1000)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    p.add_argument("--warmup", type=int, default=200, help="untimed warm-up steps per side (default 200)")
    p.add_argument("--model", default="lenet_300_100")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of each prunable weight masked out")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (target: 1)")
    p.add_argument("--no-dataloader", action="store_true", help="skip the (slow) DataLoader side")
    p.add_argument("--quick", action="store_true", help="smoke mode: 300 steps x 3 rounds")
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds, args.warmup = 300, 3, 50
    return args


def make_masks(model: torch.nn.Module, sparsity: float, seed: int = 1234) -> dict[str, torch.Tensor]:
    """Random {0,1} float masks keeping (1 - sparsity) of every prunable weight."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    masks = {}
    for name in prunable_names(model, PruneConfig()):
        p = params[name]
        masks[name] = (torch.rand(p.shape, generator=gen) >= sparsity).to(p.dtype)
    return masks


def fused_adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=LR, fused=True)


def ticketlab_optimizer(model, config, device) -> torch.optim.Optimizer:
    """ticketlab's make_optimizer; it has taken a module or (newer) an iterable of parameters."""
    try:
        return make_optimizer(model.parameters(), config, device)
    except (AttributeError, TypeError):
        return make_optimizer(model, config, device)


class Ours:
    name = "ours"

    def __init__(self, model, data, masks):
        self.model, self.data, self.masks = model, data, masks
        self.config = TrainConfig(batch_size=BATCH, lr=LR, iterations=HUGE, eval_every=HUGE, checkpoint_every=HUGE)
        self.optimizer = ticketlab_optimizer(model, self.config, data.x_train.device)
        # A non-empty history skips the loop's initial evaluation; the end-of-call one remains.
        self.state = TrainState(step=0, history=[{"step": 0, "val_loss": 0.0}])

        self.stepper = SingleStepper(model, self.optimizer, Task().bind(data.y_train), data, masks)
        self.events = NoEvents()

    def run(self, steps: int) -> None:
        run_loop(self.stepper, self.data, self.config, [self.state], [self.events], self.state.step + steps,
                 data_seeds=[0])
        del self.state.history[1:]


class OursHandWritten(Ours):
    """The same loop with the stepper ``--stepper auto`` picks for a pruned MLP unit when its
    probe says so: the hand-written step (``SparseStepper``; at ~50% kept every layer is a dense
    matmul with a masked gradient, no autograd and no re-mask of the weights after the step)."""

    name = "ours, hand-written step"

    def __init__(self, model, data, masks):
        super().__init__(model, data, masks)
        from ticketlab.train.steppers.sparse import SparseStepper

        self.stepper = SparseStepper(model, self.optimizer, Task().bind(data.y_train), data, masks)


class NoEvents(Events):
    """Nothing happens at the loop's events (the base class's defaults)."""


class Bare:
    name = "bare"

    def __init__(self, model, data, masks=None):
        self.model, self.x, self.y = model, data.x_train, data.y_train
        self.optimizer = fused_adam(model)
        self.generator = torch.Generator().manual_seed(0)
        self.n = self.x.shape[0]
        self.per_epoch = self.n // BATCH
        self.offset, self.order = 0, None
        if masks:
            params = dict(model.named_parameters())
            self.masked = [params[n] for n in masks]
            self.mask_values = list(masks.values())
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.mask_values)
            self.name = "bare+mask"
        else:
            self.masked = None

    def next_index(self) -> torch.Tensor:
        """The next minibatch's example indices: one randperm per epoch, sliced."""
        if self.offset == 0:
            self.order = torch.randperm(self.n, generator=self.generator)
        index = self.order[self.offset * BATCH:(self.offset + 1) * BATCH]
        self.offset = (self.offset + 1) % self.per_epoch
        return index

    def run(self, steps: int) -> None:
        model, opt, x, y = self.model, self.optimizer, self.x, self.y
        for _ in range(steps):
            index = self.next_index()
            loss = F.cross_entropy(model(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.masked:
                with torch.no_grad():
                    torch._foreach_mul_(self.masked, self.mask_values)


class UserLoop(Bare):
    """The bare loop as a user writes it for ``ticketlab.run(..., train=fn)``: the same masks,
    re-applied by ``unit.step(loss)`` (``train.user_loop.TrainingUnit``), with the evaluation
    check a user loop makes every step."""

    name = "user loop"

    def __init__(self, model, data, masks):
        super().__init__(model, data)
        from ticketlab.train.user_loop import TrainingUnit

        self.name = UserLoop.name
        self.unit = TrainingUnit(model, masks, self.optimizer, TrainState(step=0), NoEvents(), data,
                                 Task().bind(data.y_train), end=HUGE, eval_every=HUGE, capture_steps=frozenset(),
                                 seed=0)

    def run(self, steps: int) -> None:
        model, opt, x, y, unit = self.model, self.optimizer, self.x, self.y, self.unit
        for _ in range(steps):
            index = self.next_index()
            loss = F.cross_entropy(model(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            unit.step(loss)
            if unit.eval_due:
                unit.evaluate()


def bookkeeping_us(side: UserLoop, calls: int = 3000, rounds: int = 5) -> tuple[float, float]:
    """Median microseconds of ``unit.step(loss)`` and of what the built-in loop does per step in its
    place (the stepper's re-mask and the on-device loss sum): the API's own cost, measured apart
    from the step so that background load on a shared machine does not swamp it."""
    unit, loss = side.unit, torch.tensor(1.0)
    total = torch.zeros(1)
    unit.end = HUGE * 2  # bookkeeping calls only; no training is timed here

    def builtin() -> None:
        unit._stepper.apply_masks_()
        total.add_(loss.detach())

    timings: dict[str, list[float]] = {"user": [], "builtin": []}
    for _ in range(rounds):
        for name, fn in (("user", lambda: unit.step(loss)), ("builtin", builtin)):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            timings[name].append(1e6 * (time.perf_counter() - start) / calls)
    return median(timings["user"]), median(timings["builtin"])


class Loader:
    name = "dataloader"

    def __init__(self, model, data, masks=None):
        self.model = model
        self.optimizer = fused_adam(model)
        self.loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True,
                                 generator=torch.Generator().manual_seed(0))
        self.iterator = iter(self.loader)

    def run(self, steps: int) -> None:
        model, opt = self.model, self.optimizer
        for _ in range(steps):
            try:
                xb, yb = next(self.iterator)
            except StopIteration:
                self.iterator = iter(self.loader)
                xb, yb = next(self.iterator)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    print_machine("hot loop: ticketlab masked IMP step vs plain PyTorch")

    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    template = build_model(args.model, data.input_shape, data.num_classes)
    init = {k: v.clone() for k, v in template.state_dict().items()}
    masks = make_masks(template, args.sparsity)
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())

    def fresh():
        model = build_model(args.model, data.input_shape, data.num_classes)
        model.load_state_dict(init)
        return model

    sides = [Ours(fresh(), data, masks), Bare(fresh(), data), Bare(fresh(), data, masks), UserLoop(fresh(), data, masks)]
    from ticketlab.train.steppers.sparse import sparse_ineligible

    if not sparse_ineligible(template, Task().bind(data.y_train), data, masks, torch.device("cpu"), None):
        sides.append(OursHandWritten(fresh(), data, masks))
    if not args.no_dataloader:
        sides.append(Loader(fresh(), data))
    fused = bool(sides[0].optimizer.defaults.get("fused"))
    print(f"model {args.model} | train examples {data.x_train.shape[0]} | batch {BATCH} | "
          f"masks keep {100 * kept:.1f}% of prunable weights | ticketlab optimizer fused={fused}")
    print(f"{args.steps} steps per side per round, {args.rounds} interleaved rounds, {args.warmup} warm-up steps\n")

    for side in sides:
        side.run(args.warmup)

    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for side in order:
            start = time.perf_counter()
            side.run(args.steps)
            times[side.name].append(time.perf_counter() - start)

    # The evaluation the loop runs at the end of every call (val 500 + test 1000 examples).
    stepper = sides[0].stepper
    eval_times = []
    for _ in range(max(5, args.rounds)):
        start = time.perf_counter()
        stepper.evaluate(eval_batches(data, "val"))
        stepper.evaluate(eval_batches(data, "test"))
        eval_times.append(time.perf_counter() - start)
    eval_s = median(eval_times)

    rate = {name: [args.steps / t for t in ts] for name, ts in times.items()}
    ours_corrected = [args.steps / max(t - eval_s, 1e-9) for t in times["ours"]]

    print("| loop | steps/s (median) | range over rounds | ms/step |")
    print("|---|---:|---:|---:|")
    for name, rs in rate.items():
        print(f"| {name} | {median(rs):.0f} | {spread(rs)} | {1000 / median(rs):.3f} |")
    print(f"| ours, minus its end-of-call eval | {median(ours_corrected):.0f} | {spread(ours_corrected)} | "
          f"{1000 / median(ours_corrected):.3f} |")
    print(f"\nend-of-call evaluation (val+test, 1,500 examples): {1000 * eval_s:.2f} ms "
          f"(= {100 * eval_s / median(times['ours']):.2f}% of one {args.steps}-step call)\n")

    def paired(a: str, b: str, a_rates=None) -> list[float]:
        a_rates = a_rates or rate[a]
        return [x / y for x, y in zip(a_rates, rate[b])]

    print("| ratio (median of per-round paired ratios) | value | range | target |")
    print("|---|---:|---:|---|")
    rows = [("ours / bare", paired("ours", "bare"), ">= 0.92x"),
            ("ours (eval removed) / bare", paired("ours", "bare", ours_corrected), ""),
            ("ours / bare+mask", paired("ours", "bare+mask"), ""),
            ("bare+mask / bare (cost of re-masking)", paired("bare+mask", "bare"), ""),
            ("user loop / ours (the user-loop API vs the built-in loop)", paired("user loop", "ours"), "within 5% (issue 21)"),
            ("user loop / ours (eval removed)", [u / o for u, o in zip(rate["user loop"], ours_corrected)], ""),
            ("user loop / bare+mask", paired("user loop", "bare+mask"), "")]
    if OursHandWritten.name in rate:
        rows.append((f"{OursHandWritten.name} / bare", paired(OursHandWritten.name, "bare"), ">= 0.98x (issue 12)"))
        rows.append((f"{OursHandWritten.name} / ours", paired(OursHandWritten.name, "ours"), ""))
    if "dataloader" in rate:
        rows.append(("ours / dataloader", paired("ours", "dataloader"), "> 1"))
    for label, values, target in rows:
        print(f"| {label} | {median(values):.3f}x | {spread(values)} | {target} |")
    user_us, builtin_us = bookkeeping_us(next(s for s in sides if isinstance(s, UserLoop)))
    step_us = 1e6 / median(rate["ours"])
    print(f"\nper-step bookkeeping: unit.step(loss) {user_us:.1f} us vs the built-in loop's re-mask + loss sum "
          f"{builtin_us:.1f} us: {user_us - builtin_us:+.1f} us = {100 * (user_us - builtin_us) / step_us:+.2f}% of a "
          f"{step_us / 1000:.2f} ms step (the user-loop API's own cost; target within 5%)")
    verdict = median(paired("ours", "bare")) >= 0.92
    print(f"\nours/bare target (>= 0.92x): {'MET' if verdict else 'NOT MET'}")
    print("\nafter the run:", end=" ")
    print_availability()


if __name__ == "__main__":
    main()
