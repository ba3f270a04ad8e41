"""Export benchmark: latency of a LeNet-300-100 ticket's exports against the dense model, CPU, one thread.

Sides, all computing the same function (checked before timing), torch.inference_mode:

  dense       the trained (or initial) LeNet-300-100, nn.Linear layers, no mask
  masked      the same with the pruned weights zeroed (dense compute: the zeros cost the same)
  sparse      ticketlab's sparse export, loaded (CSR weights, torch.sparse.mm)
  structured  ticketlab's structured export, loaded (dead units and unread inputs removed)
  onnx        the structured export run by onnxruntime (one intra-op thread)

The ticket: by default the layerwise magnitude mask of 15 rounds of 20% pruning (output layer
10%) of a randomly initialised LeNet (3.6% of weights remaining); ``--experiment DIR --level L``
takes a stored ticket instead, and ``--experiment DIR --prune-rounds 15`` prunes that
experiment's trained dense weights (level 0) the same way, so the mask has the structure
training gives (unused border pixels, dead units). Repeats are interleaved (the order rotates
every round) and ratios are medians of per-round paired ratios, dense time / side time.

    .venv/bin/python bench/export.py            # full (~1-2 min)
    .venv/bin/python bench/export.py --quick    # smoke check

With CUDA present a GPU section times 2:4 semi-structured sparse matmuls
(``torch.sparse.to_sparse_semi_structured``) against dense fp16 ones; it is skipped otherwise.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sys.path for the src layout)
import torch

from _common import median, print_availability, print_machine, spread
from ticketlab.export.latency import export_sides, interleaved_times, paired_speedups
from ticketlab.masks import Mask
from ticketlab.models import build_model


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", help="an experiment directory of lenet_300_100 (default: random weights)")
    p.add_argument("--level", type=int, help="with --experiment: export this stored ticket")
    p.add_argument("--prune-rounds", type=int, default=15, help="rounds of layerwise magnitude pruning (default 15)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--seconds", type=float, default=0.25, help="target seconds per side per round and batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 rounds of 0.05 s")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 0.05
    return args


def magnitude_rounds(model: torch.nn.Module, rounds: int, rate: float = 0.2, output_rate: float = 0.1) -> Mask:
    """Layerwise IMP's masks without the retraining: ``rounds`` times, prune ``rate`` of each
    layer's remaining weights by magnitude (``output_rate`` for the last layer)."""
    weights = [(n, p.detach()) for n, p in model.named_parameters() if n.endswith("weight")]
    masks = {}
    for index, (name, weight) in enumerate(weights):
        keep = torch.ones_like(weight, dtype=torch.bool)
        layer_rate = output_rate if index == len(weights) - 1 else rate
        for _ in range(rounds):
            remaining = int(keep.sum())
            prune = int(round(layer_rate * remaining))
            scores = torch.where(keep, weight.abs(), torch.full_like(weight, float("inf")))
            keep.view(-1)[scores.view(-1).argsort()[:prune]] = False
        masks[name] = keep
    return Mask(masks)


def the_ticket(args) -> tuple[torch.nn.Module, Mask, torch.Tensor, str]:
    """(dense model with weights, mask, 256 real-shaped inputs, description)."""
    if args.experiment:
        import ticketlab
        from ticketlab.experiment.environment import environment
        from ticketlab.weights import load_state

        result = ticketlab.Result.load(args.experiment)
        env = environment(result.config)
        model = env.build(0, "cpu").eval()
        level = args.level if args.level is not None else 0
        load_state(model, result.store.tensors(result.final_weights_path(level)))
        x = env.data.x_val[:256].cpu()
        if args.level is not None:
            return model, result.mask(args.level), x, f"stored ticket: {args.experiment} level {args.level}"
        return model, magnitude_rounds(model, args.prune_rounds), x, (
            f"{args.experiment} level 0 trained weights, {args.prune_rounds} rounds of layerwise magnitude pruning")
    torch.manual_seed(0)
    model = build_model("lenet_300_100", (1, 28, 28), 10).eval()
    x = torch.rand(256, 1, 28, 28)
    return model, magnitude_rounds(model, args.prune_rounds), x, (
        f"random initial weights, {args.prune_rounds} rounds of layerwise magnitude pruning")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print_machine("Export latency: dense vs masked vs sparse vs structured vs ONNX (LeNet-300-100)")
    model, mask, x256, description = the_ticket(args)
    print(f"ticket: {description}; {100 * mask.fraction_remaining():.2f}% of weights remaining "
          f"({', '.join(f'{n} {100 * f:.1f}%' for n, f in mask.layer_fractions().items())})")
    sides = export_sides(model, mask, x256, args.threads)  # each side checked against the masked model
    for name, why in sides.skipped.items():
        print(f"{name} side skipped: {why}")
    if sides.removed:
        inputs_kept = sides.removed.get("inputs") or [784, 784]
        print("structured: units kept " + ", ".join(f"{n} {a}->{b}" for n, (a, b) in sides.removed["units"].items())
              + f"; inputs {inputs_kept[0]}->{inputs_kept[1]}")

    print("\n| file | bytes | dense / file |")
    print("|---|---:|---:|")
    for name, size in sides.file_bytes.items():
        print(f"| {name} | {size:,} | {sides.file_bytes['dense'] / size:.1f}x |")
    print()

    best = {}
    for batch in (1, 256):
        times = interleaved_times(sides.calls, x256[:batch].contiguous(), args.rounds, args.seconds)
        speedups = paired_speedups(times)
        print(f"| batch {batch} | median us/call | range | dense / side (paired median) | range |")
        print("|---|---:|---:|---:|---:|")
        for n in times:
            print(f"| {n} | {1e6 * median(times[n]):.1f} | {spread([1e6 * t for t in times[n]])} | "
                  f"{median(speedups[n]):.2f}x | {spread(speedups[n])} |")
        print()
        best[batch] = max((median(speedups[n]), n) for n in times if n not in ("dense", "masked"))

    file_ratio = sides.file_bytes["dense"] / sides.file_bytes["sparse"]
    (b256, n256), (b1, n1) = best[256], best[1]
    print(f"targets: sparse file >= 15x smaller: {file_ratio:.1f}x {'MET' if file_ratio >= 15 else 'NOT MET'}; "
          f"batch 256 >= 4x: {b256:.2f}x ({n256}) {'MET' if b256 >= 4 else 'NOT MET'}; "
          f"batch 1 >= 1.5x: {b1:.2f}x ({n1}) {'MET' if b1 >= 1.5 else 'NOT MET'}")
    gpu_section(args)
    print("\nafter the run:", end=" ")
    print_availability()


# LeNet-300-100's first layer (300x784) padded to the 2:4 kernels' tiles, and a large layer.
SEMI_STRUCTURED_SHAPES = ((320, 832), (4096, 4096))


def two_four_weight(rows: int, cols: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A random weight with the 2 largest of every 4 consecutive entries kept (a valid 2:4 pattern)."""
    weight = torch.randn(rows, cols, device=device, dtype=dtype)
    groups = weight.abs().reshape(-1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(2, dim=1).indices, True)
    return weight * keep.reshape(rows, cols)


def seconds_per_call(fn, device: str, warmup: int = 10, repeats: int = 100) -> float:
    """Mean wall seconds of ``fn()``, synchronising CUDA around the timed loop (kernels are async)."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def semi_structured_rows(shapes=SEMI_STRUCTURED_SHAPES, batches=(64, 4096), dtypes=(torch.float16,),
                         device: str = "cuda", repeats: int = 100) -> list[dict]:
    """y = x W^T with W dense vs 2:4 semi-structured, one row per (shape, dtype, batch).

    A shape or dtype the 2:4 kernels refuse (or a device without them) keeps its dense timings
    and records ``error`` (its first line) instead of the 2:4 ones, so a caller reports what this
    GPU and torch build support rather than stopping.
    """
    try:
        from torch.sparse import to_sparse_semi_structured
    except ImportError as exc:
        to_sparse_semi_structured, missing = None, f"torch.sparse.to_sparse_semi_structured unavailable: {exc}"
    rows_out: list[dict] = []
    for dtype in dtypes:
        for rows, cols in shapes:
            weight = two_four_weight(rows, cols, dtype, device)
            sparse, error = None, None
            try:
                if to_sparse_semi_structured is None:
                    raise RuntimeError(missing)
                sparse = to_sparse_semi_structured(weight)
            except Exception as exc:  # noqa: BLE001  (any refusal is a finding to report)
                error = (str(exc).splitlines() or [repr(exc)])[0]
            for batch in batches:
                x = torch.randn(batch, cols, device=device, dtype=dtype)
                row = {"shape": f"{rows}x{cols}", "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                       "dense_us": 1e6 * seconds_per_call(lambda: torch.nn.functional.linear(x, weight), device,
                                                          repeats=repeats)}
                if sparse is None:
                    row["error"] = error
                else:
                    sparse_s = seconds_per_call(lambda: torch.nn.functional.linear(x, sparse), device, repeats=repeats)
                    row.update(sparse_us=1e6 * sparse_s, dense_over_sparse=row["dense_us"] / (1e6 * sparse_s))
                rows_out.append(row)
    return rows_out


def gpu_section(args) -> None:
    """2:4 semi-structured sparse matmul vs dense fp16 on the GPU; skipped without CUDA."""
    if not torch.cuda.is_available():
        print("\nGPU section skipped: no CUDA device")
        return
    print(f"\n## GPU: {torch.cuda.get_device_name()} -- 2:4 semi-structured vs dense (fp16, y = x W^T)")
    print("| W shape | batch | dense us | 2:4 us | dense / 2:4 |")
    print("|---|---:|---:|---:|---:|")
    for row in semi_structured_rows():
        if "error" in row:
            print(f"| {row['shape']} | {row['batch']} | {row['dense_us']:.1f} | 2:4 not supported here: "
                  f"{row['error']} | |")
        else:
            print(f"| {row['shape']} | {row['batch']} | {row['dense_us']:.1f} | {row['sparse_us']:.1f} | "
                  f"{row['dense_over_sparse']:.2f}x |")


if __name__ == "__main__":
    main()
