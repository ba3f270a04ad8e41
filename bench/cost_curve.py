"""Cost curve: wall time of whole IMP experiments as levels, seeds and model size grow.

One factor at a time around a base experiment (default LeNet-300-100, 2 levels, 2 seeds,
control reinit, 500 iterations, bundled MNIST-5k, workers=2, threads=1):

  levels  1, 2, 4, 8      (seeds and model at the base)
  seeds   1, 2, 4         (levels and model at the base)
  model   mlp_100, lenet_300_100, mlp_1000_300   (levels and seeds at the base)

Each experiment runs through ``ticketlab.run`` in a fresh Python process (as the CLI runs
it) into a fresh temporary root (identical configs are run once). Wall time is the whole
process: interpreter and torch start-up, data loading, worker start-up, pruning,
evaluation, checkpoints, shutdown. A training unit is one arm of one replicate at one level:

    units = seeds * (1 + levels * (1 + n_controls))

For the base model it fits ``wall = overhead + cost * units`` by least squares; for every
model it also reports the mean single-unit training time the units record themselves, so
readers can extrapolate. Prints a markdown table and saves a plot (default
docs/figures/cost_curve.png).

    .venv/bin/python bench/cost_curve.py            # full (~3 min)
    .venv/bin/python bench/cost_curve.py --quick    # smoke check (< 1 min, plot to /tmp)
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import _common  # noqa: F401  (sys.path for the src layout)
import torch

from _common import (available_cores, median, print_availability, print_machine, run_experiment_subprocess,
                     scratch_directory)

REPO = Path(__file__).resolve().parents[1]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=ints, default=[1, 2, 4, 8], help="levels sweep (default 1,2,4,8)")
    p.add_argument("--seeds", type=ints, default=[1, 2, 4], help="seeds sweep (default 1,2,4)")
    p.add_argument("--models", default="mlp_100,lenet_300_100,mlp_1000_300", help="model sweep")
    p.add_argument("--base-model", default="lenet_300_100")
    p.add_argument("--base-levels", type=int, default=2)
    p.add_argument("--base-seeds", type=int, default=2)
    p.add_argument("--controls", default="reinit", help="comma-separated control arms ('' for none)")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-free", type=float, default=0.85,
                   help="an experiment counts as quiet when at least this fraction of the cores was free (default 0.85)")
    p.add_argument("--repeats", type=int, default=1, help="rounds over all experiments, order rotated; median kept")
    p.add_argument("--plot", default=None, help="figure path (default docs/figures/cost_curve.png; /tmp in --quick)")
    p.add_argument("--quick", action="store_true", help="smoke mode: levels 1,2; seeds 1,2; mlp_100+lenet; 100 iterations")
    args = p.parse_args()
    if args.quick:
        args.levels, args.seeds, args.iterations = [1, 2], [1, 2], 100
        args.models = "mlp_100,lenet_300_100"
        args.base_levels, args.base_seeds = 2, 2
    if args.plot is None:
        args.plot = "/tmp/cost_curve_quick.png" if args.quick else str(REPO / "docs" / "figures" / "cost_curve.png")
    args.models = [m for m in args.models.split(",") if m]
    args.controls = [c for c in args.controls.split(",") if c]
    return args


@dataclass(frozen=True)
class Point:
    model: str
    levels: int
    seeds: int

    def units(self, n_controls: int) -> int:
        return self.seeds * (1 + self.levels * (1 + n_controls))


def run_experiment(point: Point, args, root: Path) -> tuple[float, list[float]]:
    """Wall time of one whole experiment in a fresh process (as the CLI runs it) and its units' own times."""
    config = {
        "model": point.model,
        "levels": point.levels,
        "seeds": point.seeds,
        "controls": args.controls,
        "data": {"dataset": args.dataset},
        "train": {"iterations": args.iterations},
    }
    options = {"root": str(root), "device": "cpu", "threads": args.threads, "workers": args.workers,
               "progress": False}
    info = run_experiment_subprocess(config, options)
    return info["wall_s"], info["unit_s"]


def n_params(model: str, dataset: str) -> int:
    from ticketlab.experiment.inputs import builtin_inputs

    return sum(p.numel() for p in builtin_inputs(model, dataset, None, 0).build(0).parameters())


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my / mx
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def plot(path: Path, args, sweeps, walls, params, quiet, fit) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nc = len(args.controls)
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    ax = axes[0][0]
    xs = [p.levels for p in sweeps["levels"]]
    ax.plot(xs, [walls[p] for p in sweeps["levels"]], "o-")
    ax.set(xlabel="levels", ylabel="wall time (s)",
           title=f"levels ({args.base_model}, seeds={args.base_seeds})")
    ax = axes[0][1]
    xs = [p.seeds for p in sweeps["seeds"]]
    ax.plot(xs, [walls[p] for p in sweeps["seeds"]], "o-")
    ax.set(xlabel="seeds", ylabel="wall time (s)",
           title=f"seeds ({args.base_model}, levels={args.base_levels})")
    ax = axes[1][0]
    models = sweeps["models"]
    ax.plot([params[p.model] for p in models], [walls[p] for p in models], "o-")
    for p in models:
        ax.annotate(p.model, (params[p.model], walls[p]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xscale="log", xlabel="parameters", ylabel="wall time (s)",
           title=f"model size (levels={args.base_levels}, seeds={args.base_seeds})")
    ax = axes[1][1]
    all_points = sorted(walls, key=lambda p: p.units(nc))
    by_model: dict[str, list[Point]] = {}
    for p in all_points:
        by_model.setdefault(p.model, []).append(p)
    for model, pts in by_model.items():
        ax.plot([p.units(nc) for p in pts], [walls[p] for p in pts], "o", label=model)
    a, b = fit
    xmax = max(p.units(nc) for p in all_points)
    ax.plot([0, xmax], [a, a + b * xmax], "--", color="gray", label=f"{args.base_model} fit: {a:.1f} s + {b:.2f} s/unit")
    ax.set(xlabel="training units", ylabel="wall time (s)", title="all experiments vs units")
    # Experiments that ran under background load: marked in every panel, left out of the fit.
    panel_x = [(axes[0][0], sweeps["levels"], lambda p: p.levels), (axes[0][1], sweeps["seeds"], lambda p: p.seeds),
               (axes[1][0], sweeps["models"], lambda p: params[p.model]), (ax, all_points, lambda p: p.units(nc))]
    for panel, pts, x in panel_x:
        busy = [p for p in pts if not quiet[p]]
        if busy:
            panel.plot([x(p) for p in busy], [walls[p] for p in busy], "x", color="red", markersize=10,
                       label="background load (BUSY)")
    for panel in (axes[0][0], axes[0][1], axes[1][0], ax):
        panel.set_ylim(bottom=0)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize=8)
    fig.suptitle(f"ticketlab IMP cost on {args.dataset}, {args.iterations} iterations/unit, "
                 f"controls={','.join(args.controls) or 'none'}, workers={args.workers}, threads={args.threads}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print_machine(f"cost curve: workers={args.workers}, threads={args.threads}")
    nc = len(args.controls)
    base = dict(model=args.base_model, levels=args.base_levels, seeds=args.base_seeds)
    sweeps = {
        "levels": [Point(**{**base, "levels": v}) for v in args.levels],
        "seeds": [Point(**{**base, "seeds": v}) for v in args.seeds],
        "models": [Point(**{**base, "model": m}) for m in args.models],
    }
    points = list(dict.fromkeys(p for ps in sweeps.values() for p in ps))  # unique, in order
    params = {m: n_params(m, args.dataset) for m in {p.model for p in points}}
    total_units = sum(p.units(nc) for p in points)
    print(f"{len(points)} distinct experiments, {total_units} training units x {args.iterations} iterations, "
          f"controls={args.controls or 'none'}, {args.repeats} round(s)\n")

    walls_all: dict[Point, list[float]] = {p: [] for p in points}
    unit_times: dict[Point, list[float]] = {p: [] for p in points}
    cores_free: dict[Point, list[float]] = {p: [] for p in points}
    with scratch_directory("ticketlab-bench-cost-") as base_dir:
        for r in range(args.repeats):
            order = points[r % len(points):] + points[:r % len(points)]
            for i, point in enumerate(order):
                before = available_cores(seconds=0.5)
                wall, units = run_experiment(point, args, base_dir / f"r{r}-{i}")
                after = available_cores(seconds=0.5)
                walls_all[point].append(wall)
                unit_times[point].extend(units)
                cores_free[point].append(min(before, after))
                print(f"  {point.model:>14} levels={point.levels} seeds={point.seeds}: "
                      f"{point.units(nc):3d} units, {wall:6.2f} s  (cores free before/after: {before:.2f}/{after:.2f})",
                      flush=True)
                shutil.rmtree(base_dir / f"r{r}-{i}", ignore_errors=True)
    walls = {p: median(ws) for p, ws in walls_all.items()}
    print()

    quiet_level = args.min_free * (os.cpu_count() or 1)
    quiet = {p: min(cores_free[p]) >= quiet_level for p in points}
    print("| sweep | model | params | levels | seeds | units | wall s | wall s / unit | mean unit training s | cores free |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sweep, pts in sweeps.items():
        for p in pts:
            u = p.units(nc)
            mean_unit = sum(unit_times[p]) / len(unit_times[p])
            print(f"| {sweep} | {p.model} | {params[p.model]:,} | {p.levels} | {p.seeds} | {u} | "
                  f"{walls[p]:.1f} | {walls[p] / u:.2f} | {mean_unit:.2f} | {min(cores_free[p]):.2f}"
                  f"{'' if quiet[p] else ' BUSY'} |")
    print(f"\ncores free = busy-loop probe of the {os.cpu_count()} cores before and after the experiment (the lower);"
          f" BUSY (< {quiet_level:.1f}) means background load inflated that row (load that came and went in between"
          " is not caught: compare its mean unit training time with its neighbours').\n")

    base_points = [p for p in points if p.model == args.base_model]
    quiet_base = [p for p in base_points if quiet[p]]
    if len({p.units(nc) for p in quiet_base}) >= 2:
        fit_points, which = quiet_base, "quiet"
    else:
        fit_points, which = base_points, "all (too few quiet ones)"
    overhead, slope = fit_line([p.units(nc) for p in fit_points], [walls[p] for p in fit_points])
    print(f"fit over {len(fit_points)} {args.base_model} experiments ({which}): "
          f"wall ~= {overhead:.1f} s + {slope:.3f} s x units  (workers={args.workers})")
    print("\nper-unit cost by model (one unit = one training of "
          f"{args.iterations} iterations + its evaluations and files):\n")
    print(f"| model | params | mean unit training s (1 worker's view) | effective s/unit at workers={args.workers}* | "
          "from |")
    print("|---|---:|---:|---:|---|")
    for model in args.models:
        pts = [p for p in points if p.model == model and quiet[p]] or [p for p in points if p.model == model]
        times = [t for p in pts for t in unit_times[p]]
        eff = [(walls[p] - overhead) / p.units(nc) for p in pts]
        source = "quiet runs" if all(quiet[p] for p in pts) else "BUSY runs only"
        print(f"| {model} | {params[model]:,} | {sum(times) / len(times):.2f} | {median(eff):.2f} | {source} |")
    print(f"\n*effective = (wall - {overhead:.1f} s fixed overhead from the fit) / units, median over that model's "
          "experiments.\nExtrapolate: wall ~= overhead + units x effective s/unit x (iterations / "
          f"{args.iterations}), units = seeds x (1 + levels x (1 + n_controls)).")

    plot(Path(args.plot), args, sweeps, walls, params, quiet, (overhead, slope))
    print(f"\nplot saved to {args.plot}")
    print("\nafter the run:", end=" ")
    print_availability()


if __name__ == "__main__":
    main()
