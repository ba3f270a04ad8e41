"""What the examples share: their command line, running, splitting data, and the printout
(what was pruned, how much is left, and the scores of the ticket and its controls)."""

from __future__ import annotations

import argparse

import torch

import ticketlab
from ticketlab.roles import ParameterPlan


def command_line(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """``--quick`` (a seconds-long smoke run) and ``--out`` (where experiments go)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds), to check that it works")
    parser.add_argument("--out", default="experiments/examples", help="where experiments are written")
    return parser.parse_args(argv)


def run_example(config: dict, args: argparse.Namespace, **inputs) -> ticketlab.Result:
    """``ticketlab.run`` on one CPU worker with the example's model and data, then the printout."""
    options = ticketlab.RunOptions(root=args.out, workers=1, progress=False, device="cpu")
    result = ticketlab.run(config, options, **inputs)
    report(result)
    return result


def splits(x: torch.Tensor, y: torch.Tensor, train: int, val: int) -> dict:
    """The first ``train`` examples, the next ``val``, and the rest as test (shuffle first)."""
    return {"train": (x[:train], y[:train]), "val": (x[train : train + val], y[train : train + val]),
            "test": (x[train + val :], y[train + val :])}


def report(result) -> None:
    """Print the experiment's pruning plan and, per level, the score of the ticket and of each control."""
    plan = ParameterPlan.from_json(result.store.json(result.store.plan_path))
    print(f"\nexperiment: {result.directory}")
    print("what was pruned (by role):")
    for line in plan.describe().splitlines():
        print(f"  {line}")
    print("pruned tensors: " + ", ".join(plan.pruned))
    kept = [name for name in plan.roles if name not in plan.pruned and plan.roles[name] != ("bias",)]
    biases = sum(1 for name in plan.roles if name not in plan.pruned and plan.roles[name] == ("bias",))
    print("not pruned:     " + ", ".join(kept + ([f"and {biases} bias(es)"] if biases else [])))

    metric = result.runs[0]["metric"]
    arms = ["ticket"] + [a for a in result.config.controls]
    print(f"\n{metric} on the test set at the early-stopping iteration (replicate 0):")
    print(f"  {'level':>5} {'% left':>7} " + " ".join(f"{a:>8}" for a in arms))
    for level in result.levels():
        rows = {r["arm"]: r for r in result.runs if r["level"] == level and r["replicate"] == 0}
        left = next(iter(rows.values()))["percent_remaining"]
        cells = []
        for arm in arms:
            value = rows.get(arm, {}).get("test_acc_at_early_stop")
            cells.append(f"{value:8.3f}" if value is not None else f"{'-':>8}")
        print(f"  {level:>5} {left:7.1f} " + " ".join(cells))
    last = max(result.levels())
    left = next(r["percent_remaining"] for r in result.runs if r["level"] == last)
    print(f"\nat the last level ({last}) {left:.1f}% of the prunable weights remain")
