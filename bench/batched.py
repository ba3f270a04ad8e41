"""Batched replicates vs sequential training: throughput ratio and equality of results.

K independent dense trainings (K seeds of one experiment's level 0) are run twice in the same
process: one after another (``RunOptions(batch=1)``, the plain per-model PyTorch loop) and as
one batched computation (``RunOptions(batch=K)``). Both go through ``ticketlab.run``, so store
I/O and evaluation are included on both sides. Repeats alternate A B A B and the median is
reported. It also checks that the two give the same results (test accuracy at every
evaluation within 1e-4 and the same early-stopping iteration for every replicate).

    python bench/batched.py                       # the K / model sweep written in docs/performance.md
    python bench/batched.py --quick               # a smoke check in well under a minute
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch

import ticketlab
from ticketlab.config import Config, RunOptions


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def experiment(dataset: str, model: str, k: int, iterations: int) -> Config:
    return Config.from_dict({
        "model": model, "levels": 0, "seeds": k, "data": {"dataset": dataset},
        "train": {"iterations": iterations, "eval_every": 100, "batch_size": 60},
    })


def timed_run(config: Config, batch: int) -> tuple[float, ticketlab.Result]:
    options = RunOptions(root=tempfile.mkdtemp(prefix="bench-batched-"), device="cpu", threads=1,
                         batch=batch, progress=False)
    start = time.perf_counter()
    result = ticketlab.run(config, options)
    return time.perf_counter() - start, result


def same_results(a: ticketlab.Result, b: ticketlab.Result) -> bool:
    for run in a.runs:
        twin = b.select(run["arm"], run["level"])[run["replicate"]]
        if twin["early_stop_step"] != run["early_stop_step"]:
            return False
        curve_a = a.metrics(run["level"], run["replicate"])
        curve_b = b.metrics(run["level"], run["replicate"])
        if any(abs(x["test_acc"] - y["test_acc"]) > 1e-4 for x, y in zip(curve_a, curve_b)):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case, fewer iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [("mnist1d", "mlp_100_100", k) for k in (4, 8, 16, 32)] + [
        ("mnist1d", "mlp_32_32", 16), ("mnist", "lenet_300_100", 16)]
    if args.quick:
        cases, args.repeats, args.iterations = [("mnist1d", "mlp_100_100", 8)], 1, 300

    print(f"torch {torch.__version__}, 1 thread, {cpu_model()}, {args.iterations} iterations per replicate")
    print("| dataset | model | K | sequential (s) | batched (s) | speedup | same results |")
    print("|---|---|---:|---:|---:|---:|---|")
    for dataset, model, k in cases:
        config = experiment(dataset, model, k, args.iterations)
        timed_run(experiment(dataset, model, 1, 50), 1)  # warm-up: data cache, allocator
        sequential, batched, equal = [], [], True
        for _ in range(args.repeats):
            t_seq, r_seq = timed_run(config, 1)
            t_bat, r_bat = timed_run(config, k)
            sequential.append(t_seq)
            batched.append(t_bat)
            equal = equal and same_results(r_seq, r_bat)
        s, b = statistics.median(sequential), statistics.median(batched)
        print(f"| {dataset} | {model} | {k} | {s:.2f} | {b:.2f} | {s / b:.2f}x | {'yes' if equal else 'NO'} |")


if __name__ == "__main__":
    main()
