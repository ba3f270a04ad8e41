"""Parallel-executor benchmark: one small IMP experiment with 1 worker vs 2 workers.

The same experiment (default: LeNet-300-100 on the bundled MNIST-5k, 3 levels, 2 seeds,
controls reinit+random, 600 iterations = 20 training units) is run through
``ticketlab.run`` with ``RunOptions(workers=1, threads=1)`` and ``RunOptions(workers=2,
threads=1)``, each time into a fresh temporary root, alternating A B A B ... The wall
times include everything a user waits for (worker start-up, data loading in each worker,
pruning, checkpoints, evaluation). The throughput ratio is the median of the per-pair
ratios t(workers=1) / t(workers=2).

Then it checks that the runs are *identical*: the same files, every mask, init/start/final
weights equal tensor for tensor, metrics.jsonl equal line for line, and summary.json equal
apart from ``wall_time_s``. Prints OK or DIFFERENT (and exits 1 when different).

    .venv/bin/python bench/parallel.py            # full (~2 min)
    .venv/bin/python bench/parallel.py --quick    # smoke check (< 1 min)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path for the src layout)
import torch

from _common import median, print_machine, spread


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet_300_100")
    p.add_argument("--dataset", default="mnist")
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


def run_once(config, workers: int, threads: int, root: Path) -> tuple[float, Path]:
    import ticketlab
    from ticketlab.config import RunOptions
    from ticketlab.units import cached_dataset

    cached_dataset.cache_clear()  # every run loads its data, as a fresh CLI invocation would
    options = RunOptions(root=str(root), device="cpu", threads=threads, workers=workers, progress=False)
    start = time.perf_counter()
    result = ticketlab.run(config, options)
    return time.perf_counter() - start, Path(result.directory)


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
            kind = "summary.json (minus wall_time_s)"
            ja, jb = json.loads(pa.read_text()), json.loads(pb.read_text())
            ja.pop("wall_time_s", None), jb.pop("wall_time_s", None)
            same = ja == jb
            if not same:
                keys = sorted(k for k in ja.keys() | jb.keys() if ja.get(k, "<missing>") != jb.get(k, "<missing>"))
                rel = f"{rel} (keys: {', '.join(keys)})"
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
import torch, ticketlab.units
t1 = time.perf_counter()
ticketlab.units.cached_dataset(sys.argv[1], None, 0, "cpu")
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "data_s": t2 - t1}))
"""


def startup_probe(dataset: str) -> dict[str, float]:
    """What a fresh worker process pays before its first step: importing torch+ticketlab, loading data."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, dataset], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    probe["process_s"] = time.perf_counter() - start
    return probe


def unit_seconds(directory: Path) -> float:
    """Sum of the training time the units report (their own wall_time_s)."""
    return sum(json.loads(p.read_text())["wall_time_s"] for p in directory.rglob("summary.json"))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print_machine(f"parallel executor: workers=1 vs workers={args.workers} (threads={args.threads} each)")

    from ticketlab.config import Config

    controls = [c for c in args.controls.split(",") if c]
    raw = {
        "model": args.model,
        "levels": args.levels,
        "seeds": args.seeds,
        "controls": controls,
        "data": {"dataset": args.dataset},
        "train": {"iterations": args.iterations},
    }
    config = Config.from_dict(raw)
    units = n_units(args.seeds, args.levels, len(controls))
    print(f"experiment: {json.dumps(raw)}")
    print(f"training units per run: {units} ({units * args.iterations} training steps); {args.repeats} A/B pairs\n")

    probe = startup_probe(args.dataset)
    print(f"fresh-process start-up (measured once, in a subprocess): import torch+ticketlab {probe['import_s']:.2f} s, "
          f"load {args.dataset} {probe['data_s']:.2f} s, whole process {probe['process_s']:.2f} s\n")

    base = Path(tempfile.mkdtemp(prefix="ticketlab-bench-parallel-"))
    sides = {1: "A", args.workers: "B"}
    walls: dict[int, list[float]] = {1: [], args.workers: []}
    inner: dict[int, list[float]] = {1: [], args.workers: []}
    dirs: dict[int, list[Path]] = {1: [], args.workers: []}
    try:
        for r in range(args.repeats):
            for workers in ((1, args.workers) if r % 2 == 0 else (args.workers, 1)):
                root = base / f"{sides[workers]}{r}-workers{workers}"
                wall, directory = run_once(config, workers, args.threads, root)
                walls[workers].append(wall)
                inner[workers].append(unit_seconds(directory))
                dirs[workers].append(directory)
                print(f"  pair {r}: workers={workers}: {wall:.2f} s", flush=True)
        print()

        w1, w2 = walls[1], walls[args.workers]
        ratios = [a / b for a, b in zip(w1, w2)]
        print("| run | wall s (median) | range | units/min | sum of unit times s | overhead s* |")
        print("|---|---:|---:|---:|---:|---:|")
        for workers in (1, args.workers):
            wall, busy = median(walls[workers]), median(inner[workers])
            overhead = wall - busy / workers
            print(f"| workers={workers}, threads={args.threads} | {wall:.2f} | {spread(walls[workers])} | "
                  f"{60 * units / wall:.1f} | {busy:.2f} | {overhead:.2f} |")
        print("\n*overhead = wall - (sum of unit times / workers): start-up, data loading, scheduling, idle workers")
        print(f"\nthroughput ratio workers={args.workers} / workers=1 (median of pairs): {median(ratios):.3f}x "
              f"(pairs: {', '.join(f'{x:.3f}' for x in ratios)}); target >= 1.8x: "
              f"{'MET' if median(ratios) >= 1.8 else 'NOT MET'}")
        busy_ratio = median([a / b for a, b in zip(inner[1], inner[args.workers])])
        print(f"per-unit training time, workers=1 vs workers={args.workers} (sum of unit times ratio): "
              f"{busy_ratio:.3f} (1.0 = the two workers do not slow each other down)")
        print(f"steady-state ratio without start-up/idle overhead (= workers x that): {args.workers * busy_ratio:.3f}x\n")

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
    finally:
        if args.keep:
            print(f"experiment roots kept under {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if not all_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
