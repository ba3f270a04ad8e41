"""Parallel-executor benchmark: one small IMP experiment with 1 worker vs 2 workers.

The same experiment (default: LeNet-300-100 on the bundled MNIST-5k, 3 levels, 2 seeds,
controls reinit+random, 600 iterations = 20 training units) is run through
``ticketlab.run`` with ``RunOptions(workers=1, threads=1)`` and ``RunOptions(workers=2,
threads=1)``, each time in a fresh Python process (as the CLI runs it) into a fresh
temporary root, alternating A B A B ... The wall times include everything a user waits for
(interpreter and torch start-up, data loading in the parent and in each worker, worker
start-up, pruning, checkpoints, evaluation, shutdown). The throughput ratio is the median of the per-pair
ratios t(workers=1) / t(workers=2).

Then it checks that the runs are *identical*: the same files, every mask, init/start/final
weights equal tensor for tensor, metrics.jsonl equal line for line, and summary.json equal
apart from ``wall_time_s``. Prints OK or DIFFERENT (and exits 1 when different).

    .venv/bin/python bench/parallel.py            # full (~2.5 min)
    .venv/bin/python bench/parallel.py --quick    # smoke check (< 1 min)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path for the src layout)
import torch

from _common import median, print_availability, print_machine, run_experiment_subprocess, scratch_directory, spread


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet_300_100")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--controls", default="reinit,random", help="comma-separated control arms ('' for none)")
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs (default 3)")
    p.add_argument("--workers", type=int, default=2, help="workers of side B (side A is always 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary experiment roots")
    p.add_argument("--quick", action="store_true", help="smoke mode: 1 level, control reinit, 200 iterations, 1 pair")
    args = p.parse_args()
    if args.quick:
        args.levels, args.controls, args.iterations, args.repeats = 1, "reinit", 200, 1
    return args


def n_units(seeds: int, levels: int, controls: int) -> int:
    return seeds * (1 + levels * (1 + controls))


def run_once(raw: dict, workers: int, threads: int, root: Path) -> dict:
    """One experiment in a fresh Python process (as the CLI runs it); see _common.run_experiment_subprocess."""
    options = {"root": str(root), "device": "cpu", "threads": threads, "workers": workers, "progress": False}
    return run_experiment_subprocess(raw, options)


# ---------------------------------------------------------------------------- comparison
def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_dirs(a: Path, b: Path) -> tuple[dict[str, list[int]], list[str]]:
    """Per file kind, [equal, total]; plus a list of human-readable differences."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    problems = [f"only in one run: {p}" for p in sorted(files_a ^ files_b)]
    counts: dict[str, list[int]] = {}
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if rel.suffix == ".safetensors":
            kind = rel.stem if rel.stem in ("mask", "init", "start", "final", "rewind") else "other safetensors"
            ta, tb = _load_safetensors(pa), _load_safetensors(pb)
            same = ta.keys() == tb.keys() and all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)
        elif rel.name == "metrics.jsonl":
            kind = "metrics.jsonl"
            same = _read_jsonl(pa) == _read_jsonl(pb)
        elif rel.name == "summary.json":
            kind = "summary.json (minus its timings)"
            ja, jb = json.loads(pa.read_text()), json.loads(pb.read_text())
            for key in ("wall_time_s", "eval_time_s"):
                ja.pop(key, None), jb.pop(key, None)
            same = ja == jb
            if not same:
                keys = sorted(k for k in ja.keys() | jb.keys() if ja.get(k, "<missing>") != jb.get(k, "<missing>"))
                rel = f"{rel} (keys: {', '.join(keys)})"
        elif rel.name == "manifest.json":  # checksums of every file, summary.json's (which holds timings) aside
            kind = "manifest.json (minus summary.json's checksum)"
            ma, mb = (json.loads(p.read_text())["files"] for p in (pa, pb))
            ma.pop("summary.json", None), mb.pop("summary.json", None)
            same = ma == mb
        else:
            kind = "other files"
            same = pa.read_bytes() == pb.read_bytes()
        tally = counts.setdefault(kind, [0, 0])
        tally[0] += same
        tally[1] += 1
        if not same:
            problems.append(f"differs: {rel}")
    return counts, problems


STARTUP_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, ticketlab.experiment.runner
from ticketlab.config import Config
t1 = time.perf_counter()
ticketlab.experiment.environment.environment(Config.from_dict({"data": {"dataset": sys.argv[1]}}), "cpu")
t2 = time.perf_counter()
torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)  # first optimizer: torch imports torch._dynamo
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "data_s": t2 - t1, "optim_s": t3 - t2}))
"""


def startup_probe(dataset: str) -> dict[str, float]:
    """What a fresh worker process pays before its first step: importing torch+ticketlab, loading data."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, dataset], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    probe["process_s"] = time.perf_counter() - start
    return probe


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print_machine(f"parallel executor: workers=1 vs workers={args.workers} (threads={args.threads} each)")

    from ticketlab.config import Config  # validate here, before any run

    controls = [c for c in args.controls.split(",") if c]
    raw = {
        "model": args.model,
        "levels": args.levels,
        "seeds": args.seeds,
        "controls": controls,
        "data": {"dataset": args.dataset},
        "train": {"iterations": args.iterations},
    }
    Config.from_dict(raw)  # a bad flag fails here, before anything runs
    units = n_units(args.seeds, args.levels, len(controls))
    print(f"experiment: {json.dumps(raw)}")
    print(f"training units per run: {units} ({units * args.iterations} training steps); {args.repeats} A/B pairs\n")

    probe = startup_probe(args.dataset)
    print(f"fresh-process start-up (measured once, in a subprocess): import torch+ticketlab {probe['import_s']:.2f} s, "
          f"load {args.dataset} {probe['data_s']:.2f} s, first optimizer {probe['optim_s']:.2f} s, "
          f"whole process {probe['process_s']:.2f} s")
    print("(every worker process pays this before its first step; the parent pays it too)\n")

    sides = {1: "A", args.workers: "B"}
    walls: dict[int, list[float]] = {1: [], args.workers: []}
    runs: dict[int, list[float]] = {1: [], args.workers: []}
    busy: dict[int, list[float]] = {1: [], args.workers: []}
    dirs: dict[int, list[Path]] = {1: [], args.workers: []}
    all_ok = False
    with scratch_directory("ticketlab-bench-parallel-", args.keep) as base:
        for r in range(args.repeats):
            for workers in ((1, args.workers) if r % 2 == 0 else (args.workers, 1)):
                info = run_once(raw, workers, args.threads, base / f"{sides[workers]}{r}-workers{workers}")
                walls[workers].append(info["wall_s"])
                runs[workers].append(info["run_s"])
                busy[workers].append(sum(info["unit_s"]))
                dirs[workers].append(Path(info["directory"]))
                print(f"  pair {r}: workers={workers}: {info['wall_s']:.2f} s "
                      f"(ticketlab.run {info['run_s']:.2f} s, sum of unit times {sum(info['unit_s']):.2f} s)", flush=True)
        print()

        W = args.workers
        print("| run | wall s (median) | range | units/min | ticketlab.run s | sum of unit times s | overhead s* |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for workers in (1, W):
            wall, inner, b = median(walls[workers]), median(runs[workers]), median(busy[workers])
            print(f"| workers={workers}, threads={args.threads} | {wall:.2f} | {spread(walls[workers])} | "
                  f"{60 * units / wall:.1f} | {inner:.2f} | {b:.2f} | {wall - b / workers:.2f} |")
        print("\nwall = the whole process, as a CLI user waits for it (python start, imports, ticketlab.run, exit)."
              "\n*overhead = wall - (sum of unit times / workers): start-up, data loading, worker start, "
              "scheduling, idle workers, shutdown")
        ratios = [a / b for a, b in zip(walls[1], walls[W])]
        run_ratios = [a / b for a, b in zip(runs[1], runs[W])]
        busy_ratio = median([a / b for a, b in zip(busy[1], busy[W])])
        print(f"\nthroughput ratio workers={W} / workers=1, whole process (median of pairs): {median(ratios):.3f}x "
              f"(pairs: {', '.join(f'{x:.3f}' for x in ratios)}); target >= 1.8x: "
              f"{'MET' if median(ratios) >= 1.8 else 'NOT MET'}")
        print(f"throughput ratio, ticketlab.run only (no interpreter start/torch import): {median(run_ratios):.3f}x")
        print(f"per-unit training time, workers=1 vs workers={W} (sum of unit times ratio): "
              f"{busy_ratio:.3f} (1.0 = the workers do not slow each other down)")
        print(f"steady-state ratio without start-up/idle overhead (= workers x that): {W * busy_ratio:.3f}x\n")

        # Every run must equal the first workers=1 run.
        reference = dirs[1][0]
        all_ok = True
        for workers in (1, args.workers):
            for i, directory in enumerate(dirs[workers]):
                if workers == 1 and i == 0:
                    continue
                counts, problems = compare_dirs(reference, directory)
                ok = not problems
                all_ok &= ok
                detail = ", ".join(f"{k} {e}/{t}" for k, (e, t) in sorted(counts.items()))
                print(f"workers=1 pair 0 vs workers={workers} pair {i}: {'OK' if ok else 'DIFFERENT'} ({detail})")
                for problem in problems[:20]:
                    print(f"    {problem}")
        print(f"\nidentical results: {'OK' if all_ok else 'DIFFERENT'}")
        print("after the runs:", end=" ")
        print_availability()
    if not all_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
