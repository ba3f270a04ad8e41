"""A whole IMP run end to end: this version vs the previous release vs a bare PyTorch loop.

Issue 12's benchmark: a 16-level LeNet-300-100 IMP run on the full MNIST (60,000 training
images, 5,000 of them held out for validation), evaluation every 100 iterations, one seed, no
controls, one worker with one torch thread. Sides, each in a fresh Python process (wall time
is the whole process, as a user waits for it):

* ``current``        this checkout, default ``--stepper auto`` (sparse training of pruned
                     levels where a probe says it is faster; lean evaluation);
* ``current-dense``  this checkout with ``stepper="dense"`` (lean evaluation only), to split
                     the gain between the two changes;
* ``previous``       the previous release (``--previous``, default ``8052e3f``: issue 10
                     complete, before issues 11 and 12), extracted with ``git archive``;
* ``bare``           a hand-written PyTorch IMP loop (tensor-resident data, fused Adam,
                     one ``_foreach_mul_`` re-mask per step, validation every 100 iterations,
                     the test split at each new best validation loss and at the end): what a
                     competent person writes by hand, with no files, checkpoints or resume.

Masks of ``current``, ``current-dense`` and ``previous`` are compared level by level: the
dense path should give identical masks; the sparse path may differ in the last float bits
(docs/performance.md, section 4), which can flip a weight at a pruning threshold.

    .venv/bin/python bench/imp_end_to_end.py             # 16 levels x 2,000 iterations, ~15 min quiet
    .venv/bin/python bench/imp_end_to_end.py --quick     # 3 levels x 300 iterations, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (median, print_availability, print_machine, run_experiment_subprocess,  # noqa: E402
                     scratch_directory)

REPO = Path(__file__).resolve().parent.parent

BARE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import torch.nn.functional as F
from torch import nn
from ticketlab.experiment.inputs import builtin_inputs  # the same split of the same data as ticketlab's sides

spec = json.loads(sys.argv[1])
torch.set_num_threads(1)
data = builtin_inputs("lenet_300_100", "mnist", None, 0).data
x, y = data.x_train.flatten(1), data.y_train
xv, yv, xt, yt = data.x_val.flatten(1), data.y_val, data.x_test.flatten(1), data.y_test
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
init = {k: v.clone() for k, v in model.state_dict().items()}
weights = [model[i].weight for i in (0, 2, 4)]
rates = [spec["rate"], spec["rate"], spec["output_rate"]]
masks = [torch.ones_like(w) for w in weights]
batch, iterations, every = spec["batch_size"], spec["iterations"], spec["eval_every"]
per_epoch = x.shape[0] // batch

@torch.no_grad()
def evaluate(xs, ys):
    out = model(xs)
    return F.cross_entropy(out, ys).item(), (out.argmax(1) == ys).float().mean().item()

levels = []
for level in range(spec["levels"] + 1):
    started = time.perf_counter()
    model.load_state_dict(init)
    with torch.no_grad():
        torch._foreach_mul_(weights, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"], fused=True)
    best, test_at_best = float("inf"), None
    for it in range(iterations):
        if it % per_epoch == 0:
            order = torch.randperm(x.shape[0])
        rows = order[(it % per_epoch) * batch:(it % per_epoch + 1) * batch]
        loss = F.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(weights, masks)
        if (it + 1) % every == 0:
            model.eval()
            val_loss, _ = evaluate(xv, yv)
            if val_loss < best:
                best, test_at_best = val_loss, evaluate(xt, yt)[1]
            model.train()
    model.eval()
    final_test = evaluate(xt, yt)[1]
    model.train()
    levels.append({"level": level, "s": time.perf_counter() - started, "test_at_best": test_at_best, "test": final_test})
    with torch.no_grad():  # layerwise magnitude pruning of the survivors
        for w, m, rate in zip(weights, masks, rates):
            alive = w[m.bool()].abs()
            k = int(round(rate * alive.numel()))
            if k:
                threshold = alive.kthvalue(k).values
                m.mul_((w.abs() > threshold).float())
print(json.dumps({"levels": levels, "total_s": time.perf_counter() - t0}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, default=16)
    p.add_argument("--iterations", type=int, default=2000, help="training iterations per level (default 2000)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1, help="rounds; the order of the sides rotates each round")
    p.add_argument("--sides", default="current,current-dense,previous,bare")
    p.add_argument("--previous", default="8052e3f", help="git revision of the previous release")
    p.add_argument("--keep", action="store_true", help="keep the experiment directories")
    p.add_argument("--quick", action="store_true", help="3 levels x 300 iterations, one round")
    args = p.parse_args()
    if args.quick:
        args.levels, args.iterations, args.rounds = 3, 300, 1
    return args


def extract_release(revision: str, into: Path) -> Path:
    """The ``src`` folder of ``revision`` of this repository, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def summaries(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"path": str(p.relative_to(directory))}
            for p in sorted(directory.glob("replicate_*/level_*/*/summary.json"))]


def masks(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.parent.name: load_file(p) for p in sorted(directory.glob("replicate_0/level_*/mask.safetensors"))}


def compare_masks(a: dict, b: dict) -> list[str]:
    rows = []
    for level in sorted(a.keys() & b.keys()):
        ma, mb = a[level], b[level]
        if ma.keys() != mb.keys():
            rows.append(f"{level}: different tensors")
            continue
        differ = sum(int((ma[k] != mb[k]).sum()) for k in ma)
        total = sum(ma[k].numel() for k in ma)
        rows.append(f"{level}: " + ("identical" if differ == 0 else f"{differ} of {total} entries differ ({differ / total:.2e})"))
    return rows


def print_accuracies(results: dict[str, list[dict]]) -> None:
    """Test accuracy at each level's early-stopping point, per side (first round): different
    masks must still give tickets of the same quality."""
    table: dict[str, list[float]] = {}
    for side, runs in results.items():
        if side == "bare":
            table[side] = [lv["test_at_best"] for lv in runs[0]["levels"]]
        else:
            table[side] = [s["test_acc_at_early_stop"] for s in runs[0]["summaries"] if s["path"].endswith("ticket/summary.json")]
    sides = list(table)
    print("\ntest accuracy at the early-stopping point, per level (round 0):\n")
    print("| level | " + " | ".join(sides) + " |")
    print("|---:|" + "---:|" * len(sides))
    for level in range(max(len(v) for v in table.values())):
        print(f"| {level} | " + " | ".join(f"{100 * table[s][level]:.2f}" if level < len(table[s]) else "-" for s in sides) + " |")
    if "previous" in table and "current" in table:
        gaps = [100 * (a - b) for a, b in zip(table["current"], table["previous"])]
        print(f"\ncurrent - previous, percentage points: mean {sum(gaps) / len(gaps):+.2f}, "
              f"range {min(gaps):+.2f}..{max(gaps):+.2f}")


def run_side(side: str, args: argparse.Namespace, root: Path, previous_src: Path | None) -> dict:
    config = {"model": "lenet_300_100", "levels": args.levels, "seeds": 1, "controls": [],
              "data": {"dataset": "mnist"}, "train": {"iterations": args.iterations, "eval_every": args.eval_every}}
    if side == "bare":
        from ticketlab.config import Config

        resolved = Config.from_dict(config)
        spec = {"levels": args.levels, "iterations": args.iterations, "eval_every": args.eval_every,
                "batch_size": resolved.train.batch_size, "lr": resolved.train.lr,
                "rate": resolved.prune.rate, "output_rate": resolved.prune.output_rate}
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", BARE, json.dumps(spec)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if out.returncode != 0:
            raise RuntimeError(f"bare loop failed:\n{out.stderr[-3000:]}")
        info = json.loads(out.stdout.strip().splitlines()[-1])
        return {"wall_s": wall, "unit_s": [lv["s"] for lv in info["levels"]], "eval_s": None, "levels": info["levels"]}
    options = {"root": str(root), "device": "cpu", "threads": 1, "workers": 1, "progress": False}
    if side == "current-dense":
        options["stepper"] = "dense"
    info = run_experiment_subprocess(config, options, src=previous_src if side == "previous" else None)
    found = summaries(Path(info["directory"]))
    eval_s = [s["eval_time_s"] for s in found if "eval_time_s" in s]
    info["eval_s"] = sum(eval_s) if eval_s else None
    info["summaries"] = found
    return info


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    print_machine("IMP end to end: current vs previous release vs bare PyTorch loop")
    print(f"LeNet-300-100, full MNIST, {args.levels} levels x {args.iterations} iterations, evaluation every "
          f"{args.eval_every}, 1 seed, no controls, 1 worker x 1 thread; previous release = {args.previous}; "
          f"{args.rounds} round(s)\n")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    results: dict[str, list[dict]] = {s: [] for s in sides}
    with scratch_directory("ticketlab-bench-e2e-", args.keep) as base:
        previous_src = extract_release(args.previous, base) if "previous" in sides else None
        for r in range(args.rounds):
            order = sides[r % len(sides):] + sides[:r % len(sides)]
            for side in order:
                info = run_side(side, args, base / f"{side}-{r}", previous_src)
                results[side].append(info)
                print(f"  round {r}: {side:14s} {info['wall_s']:8.1f} s (sum of units {sum(info['unit_s']):.1f} s)", flush=True)
        print()
        print("| side | wall s (median) | sum of unit times s | evaluation s | units |")
        print("|---|---:|---:|---:|---:|")
        for side in sides:
            runs = results[side]
            evals = [i["eval_s"] for i in runs if i["eval_s"] is not None]
            print(f"| {side} | {median([i['wall_s'] for i in runs]):.1f} | {median([sum(i['unit_s']) for i in runs]):.1f} | "
                  f"{median(evals):.1f} |" if evals else
                  f"| {side} | {median([i['wall_s'] for i in runs]):.1f} | {median([sum(i['unit_s']) for i in runs]):.1f} | - |",
                  f"{len(runs[0]['unit_s'])} |")
        wall = {s: median([i["wall_s"] for i in results[s]]) for s in sides}
        print("\n| ratio (wall, whole process) | value | target |\n|---|---:|---|")
        for slow, fast, target in (("previous", "current", 1.5), ("previous", "current-dense", None),
                                   ("current-dense", "current", None), ("bare", "current", None),
                                   ("bare", "current-dense", None), ("bare", "previous", None)):
            if slow in wall and fast in wall:
                ratio = wall[slow] / wall[fast]
                verdict = f">= {target}x: {'MET' if ratio >= target else 'NOT MET'}" if target else ""
                print(f"| {slow} / {fast} | {ratio:.2f}x | {verdict} |")
        if "current" in results:
            print("\nstepper per unit (current):")
            for s in results["current"][0]["summaries"]:
                speedup = s.get("stepper_speedup")
                print(f"  {s['path']}: {s.get('stepper')}" + (f" (probe {speedup:.2f}x)" if speedup else "")
                      + f", {s['wall_time_s']:.1f} s")
        mask_sets = {s: masks(Path(results[s][0]["directory"])) for s in ("current", "current-dense", "previous")
                     if s in results}
        for a, b in (("previous", "current-dense"), ("previous", "current"), ("current-dense", "current")):
            if a in mask_sets and b in mask_sets:
                print(f"\nmasks, {a} vs {b}:")
                for row in compare_masks(mask_sets[a], mask_sets[b]):
                    print("  " + row)
        print_accuracies(results)
        print_availability()


if __name__ == "__main__":
    main()
