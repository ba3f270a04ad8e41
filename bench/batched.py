"""Batched replicates vs sequential training: throughput ratio and equality of results.

K independent dense trainings (K seeds of one experiment's level 0) are run twice in the same
process: one after another (``RunOptions(batch=1)``, the plain per-model PyTorch loop) and as
one batched computation (``RunOptions(batch=K)``). Both go through ``ticketlab.run``, so store
I/O and evaluation are included on both sides. Repeats alternate A B A B and the median is
reported. It also checks that the two give the same results: over 50 iterations every
replicate's validation accuracy at every evaluation within 1e-3 and the same
early-stopping iteration; over the long run it reports the largest accuracy drift.

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


SHORT = 50  # iterations of the exactness check


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
                         batch=batch, probe_batch=False, progress=False)
    start = time.perf_counter()
    result = ticketlab.run(config, options)
    return time.perf_counter() - start, result


def max_accuracy_gap(a: ticketlab.Result, b: ticketlab.Result) -> tuple[float, bool]:
    """(largest |validation accuracy difference| at any evaluation of any replicate, same early-stop steps)."""
    gap, same_stop = 0.0, True
    for run in a.runs:
        twin = b.select(run["arm"], run["level"])[run["replicate"]]
        same_stop = same_stop and twin["early_stop_step"] == run["early_stop_step"]
        for x, y in zip(a.metrics(run["level"], run["replicate"]), b.metrics(run["level"], run["replicate"])):
            gap = max(gap, abs(x["val_acc"] - y["val_acc"]))
    return gap, same_stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case, fewer iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [("mnist1d", "mlp_100_100", k) for k in (4, 8, 16, 32)] + [
        ("mnist1d", "mlp_32_32", 16), ("mnist5k", "lenet_300_100", 16)]
    if args.quick:
        cases, args.repeats, args.iterations = [("mnist1d", "mlp_100_100", 8)], 1, 300

    print(f"torch {torch.__version__}, 1 thread, {cpu_model()}, {args.iterations} iterations per replicate")
    print("| dataset | model | K | sequential (s) | batched (s) | speedup | equal at 50 it. | max |Δ acc| at end (pp) |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for dataset, model, k in cases:
        config = experiment(dataset, model, k, args.iterations)
        timed_run(experiment(dataset, model, 1, 50), 1)  # warm-up: data cache, allocator
        # Exactness: over a short run batched and sequential agree to float rounding. Not bit for
        # bit: bmm sums in another order, and Adam turns a rounding-level difference in a near-zero
        # gradient into a +-lr step of that weight (seen within the first 10 steps in single
        # replicates, then flat). So: after 50 iterations, at most one test example (1e-3) apart.
        # Over long runs such differences can grow (ReLU flips); the last column reports by how much.
        short_gap, short_stop = max_accuracy_gap(timed_run(experiment(dataset, model, k, SHORT), 1)[1],
                                                 timed_run(experiment(dataset, model, k, SHORT), k)[1])
        sequential, batched, long_gap = [], [], 0.0
        for _ in range(args.repeats):
            t_seq, r_seq = timed_run(config, 1)
            t_bat, r_bat = timed_run(config, k)
            sequential.append(t_seq)
            batched.append(t_bat)
            long_gap = max(long_gap, max_accuracy_gap(r_seq, r_bat)[0])
        s, b = statistics.median(sequential), statistics.median(batched)
        exact = "yes" if short_gap <= 1e-3 and short_stop else f"NO ({short_gap:.1e})"
        print(f"| {dataset} | {model} | {k} | {s:.2f} | {b:.2f} | {s / b:.2f}x | {exact} | {100 * long_gap:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
