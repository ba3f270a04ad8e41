"""Every executor runs the same graph of units and gets the same results."""

from __future__ import annotations

import os

import pytest
import torch

from ticketlab.experiment.runner import TIMING_FIELDS
import ticketlab
from ticketlab.config import RunOptions
from ticketlab.errors import ConfigError
from ticketlab.io import load_tensors

from conftest import cli, tiny_config


def stable(runs):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in runs]


def run_with(tmp_path, name, config, **options):
    options = {"workers": 1, "probe_batch": False, **options}  # batched tests exercise the batched path
    return ticketlab.run(config, RunOptions(root=str(tmp_path / name), device="cpu", progress=False, **options))


def test_default_is_the_local_parallel_executor():
    from ticketlab.executors import ProcessPoolUnitExecutor, make_executor

    options = RunOptions(threads=1).resolved()
    assert options.workers == max(1, os.cpu_count() or 1)
    assert RunOptions(threads=1, batch=8).resolved().workers == 1
    if options.workers > 1:
        executor = make_executor(tiny_config(), "unused", options, None)
        try:
            assert isinstance(executor, ProcessPoolUnitExecutor)
        finally:
            executor.close()


CONFIG = dict(levels=2, seeds=2, controls=["reinit", "random"])


def test_process_pool_gives_identical_results(tmp_path):
    config = tiny_config(**CONFIG)
    inline = run_with(tmp_path, "inline", config)
    pooled = run_with(tmp_path, "pool", config, workers=2)
    assert stable(inline.runs) == stable(pooled.runs)
    for level in (1, 2):
        for replicate in (0, 1):
            assert inline.mask(level, replicate).equals(pooled.mask(level, replicate))


def test_batched_replicates_match_sequential_training(tmp_path):
    config = tiny_config(levels=1, seeds=4, controls=["reinit", "random"], train={"iterations": 200})
    sequential = run_with(tmp_path, "seq", config)
    batched = run_with(tmp_path, "batched", config, batch=16)
    for run in sequential.runs:
        twin = batched.select(run["arm"], run["level"])[run["replicate"]]
        assert twin["replicate"] == run["replicate"]
        assert twin["early_stop_step"] == run["early_stop_step"]
        assert twin["final_test_acc"] == pytest.approx(run["final_test_acc"], abs=1e-6)
        a = load_tensors(sequential.final_weights_path(run["level"], run["replicate"], run["arm"]))
        b = load_tensors(batched.final_weights_path(run["level"], run["replicate"], run["arm"]))
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)
    for replicate in range(4):
        assert sequential.mask(1, replicate).equals(batched.mask(1, replicate))


def test_batched_with_late_rewinding_and_any_module(tmp_path):
    """The generic vmap path (conv) and stacked optimizer state (rewinding to k) agree with sequential.

    SGD with momentum, not Adam: convolutions batched by vmap reassociate sums, and Adam divides
    by a second moment that is near zero for some weights, so a 1e-7 gradient difference can turn
    into an lr-sized step. How far such weights drift depends on the CPU's kernels, which made a
    tolerance tuned on one machine fail on another. Under SGD a rounding difference stays a
    rounding difference, while a wrong mask, momentum buffer or rewind point is off by O(1)."""
    config = tiny_config(model="conv2", levels=1, seeds=2, rewind_iteration=20,
                         train={"iterations": 60, "eval_every": 20, "checkpoint_every": 40,
                                "optimizer": "sgd", "lr": 0.05})
    sequential = run_with(tmp_path, "seq", config)
    batched = run_with(tmp_path, "batched", config, batch=4)
    for replicate in (0, 1):
        a = load_tensors(sequential.final_weights_path(0, replicate))
        b = load_tensors(batched.final_weights_path(0, replicate))
        for name in a:
            gap = a[name] - b[name]
            assert float(gap.norm()) <= 1e-4 * max(float(a[name].norm()), 1e-6), name
        for ra, rb in zip(sequential.metrics(0, replicate), batched.metrics(0, replicate)):
            assert (ra["step"], rb["val_loss"]) == (rb["step"], pytest.approx(ra["val_loss"], abs=1e-4))
        # level 1 prunes those nearly equal weights: only weights at the threshold may land differently
        mask_a, mask_b = sequential.mask(1, replicate), batched.mask(1, replicate)
        disagree = sum(int((mask_a[n] != mask_b[n]).sum()) for n in mask_a)
        assert disagree <= 1e-3 * sum(mask_a.sizes().values())
    assert {r["start_step"] for r in batched.select("ticket", 1)} == {20}


def test_batch_refuses_other_executors():
    with pytest.raises(ConfigError, match="batch > 1"):
        RunOptions(batch=4, workers=2).validate()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_batch_runs_under_every_device_value(tmp_path, capsys, device):
    """``--batch K`` takes each ``--device`` value a plain run takes: it trains where the device
    exists here, and a CUDA request without a GPU is the usual one-line error, not a traceback."""
    args = ["run", "--dataset", "digits", "--model", "mlp_16", "--levels", "1", "--seeds", "2",
            "--iterations", "20", "--eval-every", "10", "--batch", "2", "--no-probe-batch",
            "--no-progress", "--no-report", "--threads", "1", "--device", device, "--out", str(tmp_path)]
    code, out, err = cli(args, capsys)
    if device == "cuda" and not torch.cuda.is_available():
        assert code == 2 and "no CUDA GPU" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
        return
    assert code == 0, err
    (experiment,) = tmp_path.iterdir()
    assert len(list(experiment.rglob("summary.json"))) == 2 * 2  # two replicates, levels 0 and 1


def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray")
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    config = tiny_config(**CONFIG)
    local = run_with(tmp_path, "local", config)
    try:
        remote = run_with(tmp_path, "ray", config, workers=2, executor="ray")
    finally:
        ray.shutdown()
    assert stable(local.runs) == stable(remote.runs)
    for level in (1, 2):
        assert local.mask(level, 1).equals(remote.mask(level, 1))


def test_batch_never_trains_slower_than_sequential(tmp_path, monkeypatch):
    """--batch K is measured first; when no width beats sequential here, replicates train one by one."""
    import ticketlab.experiment.stack as stack
    import ticketlab.train.steppers.probe as probe
    from ticketlab.errors import PerformanceNote
    from ticketlab.experiment.environment import environment

    config = tiny_config(levels=1, seeds=2, train={"iterations": 40, "eval_every": 20})
    measured = probe.measure_speedup(environment(config), 2, steps=5)
    assert measured > 0
    widths = []
    monkeypatch.setattr(probe, "measure_speedup", lambda env, k, **kw: widths.append(k) or 0.6)
    used = []
    monkeypatch.setattr(stack, "train_stack", lambda units: used.append(len(units)))
    with pytest.warns(PerformanceNote, match="K=4: 0.60x, K=2: 0.60x.*sequentially"):
        result = ticketlab.run(config, RunOptions(root=str(tmp_path), device="cpu", progress=False, batch=4))
    assert widths == [4, 2] and not used  # the batched stepper never ran
    assert len(result.runs) == 4 and all(r["status"] == "ok" for r in result.runs)
    monkeypatch.setattr(probe, "measure_speedup", lambda env, k, **kw: 1.5 if k == 2 else 0.9)
    assert probe.choose_batch(environment(config), 4)[0] == 2


def test_workers_start_warm_and_light():
    """Workers are forked from a server that imported the training code once (Linux), and that
    code does not drag in the parent-only stacks: a worker never pays for scipy or matplotlib."""
    import subprocess
    import sys

    from ticketlab.executors.local import worker_context

    if sys.platform.startswith("linux"):
        assert worker_context().get_start_method() == "forkserver"
    probe = ("import sys, ticketlab.executors.warm; "
             "print(sorted(m for m in ('scipy', 'matplotlib', 'rich', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
