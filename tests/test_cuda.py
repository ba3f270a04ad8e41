"""The engine on CUDA: agreement with the CPU, rewinding, resume, stacked replicates, bf16.

Every test is marked ``cuda`` (``pytest -m cuda`` selects them; ``bench/gpu.py`` runs them) and
is skipped, with the reason, where ``torch.cuda.is_available()`` is False. They use only the
public API (``ticketlab.run``, ``RunOptions``, ``Result``), so moving modules does not break them.

Tolerances. Two runs that do different arithmetic (CUDA vs CPU kernels, a stacked bmm vs one
mm per replicate, bf16 vs fp32 forward passes) are not bit-equal: sums are reassociated, and
Adam can turn a rounding-level gradient difference on a near-zero weight into an lr-sized step.
Such drift moves a few weights across the pruning threshold, while a real bug (a wrong mask,
rewind point or replicate slice) is off for a large share of weights. So those comparisons
allow at most ``MASK_TOLERANCE`` (1%) of prunable weights to have a different keep/prune
decision, with the *number* kept per layer identical (the schedule fixes it), and test
accuracies within ``ACCURACY_TOLERANCE`` (2 percentage points). Runs doing the same arithmetic
on the same device (resume vs uninterrupted) must agree to float rounding (``assert_close``
at 1e-6) with identical masks.

``TICKETLAB_CUDA_TESTS_DEVICE=cpu`` runs the tests' own logic on the CPU (every "CUDA" run
then trains on the CPU), to check the tests themselves on a machine without a GPU.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

import ticketlab

from conftest import tiny_raw

DEVICE = os.environ.get("TICKETLAB_CUDA_TESTS_DEVICE", "cuda")
MASK_TOLERANCE = 0.01
ACCURACY_TOLERANCE = 0.02
DECISIVE = 0.005  # 0.5 percentage points


def needs_cuda(test):
    """Mark ``test`` ``cuda`` and skip it, saying why, when no CUDA device is present."""
    skip = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                              reason="no CUDA device: torch.cuda.is_available() is False")
    return pytest.mark.cuda(skip(test))


def run_on(tmp_path, name: str, config: dict[str, Any], device: str = DEVICE, **options: Any) -> ticketlab.Result:
    options = {"workers": 1, "probe_batch": False, "progress": False, **options}
    return ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path / name), device=device, **options))


def mask_disagreement(a: ticketlab.Mask, b: ticketlab.Mask) -> float:
    """Share of prunable weights whose keep/prune decision differs; the per-layer counts must match."""
    assert a.remaining() == b.remaining(), "the schedule fixes how many weights each layer keeps"
    differ = sum(int((a[name] != b[name]).sum()) for name in a.sizes())
    return differ / sum(a.sizes().values())


def assert_runs_close(a: ticketlab.Result, b: ticketlab.Result, levels: range) -> None:
    """Masks within MASK_TOLERANCE and final test accuracies within ACCURACY_TOLERANCE, per unit."""
    for level in levels:
        for replicate in range(a.config.seeds):
            share = mask_disagreement(a.mask(level, replicate), b.mask(level, replicate))
            assert share <= MASK_TOLERANCE, f"level {level} replicate {replicate}: {share:.2%} of mask entries differ"
    for run in a.runs:
        twin = b.select(run["arm"], run["level"])[run["replicate"]]
        assert twin["final_test_acc"] == pytest.approx(run["final_test_acc"], abs=ACCURACY_TOLERANCE), run


@needs_cuda
def test_cuda_masks_agree_with_cpu_after_a_small_imp_run(tmp_path):
    config = tiny_raw(levels=3)
    assert_runs_close(run_on(tmp_path, "cpu", config, device="cpu"), run_on(tmp_path, "cuda", config), range(1, 4))


@needs_cuda
def test_rewound_weights_equal_init_on_survivors(tmp_path):
    result = run_on(tmp_path, "rewind", tiny_raw(levels=2))
    store = result.store
    init = store.tensors(store.init_path(0))
    for level in (1, 2):
        start = store.tensors(store.unit(0, level, "ticket").start)
        mask = result.mask(level)
        for name, value in init.items():
            if name in mask:
                keep = mask[name]
                assert torch.equal(start[name][keep], value[keep]), f"level {level} {name}: survivors not rewound"
                assert torch.all(start[name][~keep] == 0)
            else:
                assert torch.equal(start[name], value)


class _Crash(Exception):
    """Raised from the progress callback: a unit killed part-way, after a checkpoint."""


@needs_cuda
def test_resume_after_an_interrupted_unit_equals_an_uninterrupted_run(tmp_path):
    config = tiny_raw(levels=2)

    def crash(unit, step, end):
        if unit.level == 1 and step >= 150:  # past the checkpoint at 100
            raise _Crash

    clean = run_on(tmp_path, "clean", config)
    with pytest.raises(_Crash):
        ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path / "resumed"), device=DEVICE, workers=1,
                                                   progress=False), progress=crash)
    resumed = run_on(tmp_path, "resumed", config)
    for level in (0, 1, 2):
        assert clean.mask(level).equals(resumed.mask(level)), f"level {level} mask differs after resume"
        a, b = clean.metrics(level), resumed.metrics(level)
        assert [m["step"] for m in a] == [m["step"] for m in b]
        torch.testing.assert_close(torch.tensor([m["val_acc"] for m in a]), torch.tensor([m["val_acc"] for m in b]),
                                   atol=1e-6, rtol=0)
        final_a = clean.store.tensors(clean.final_weights_path(level))
        final_b = resumed.store.tensors(resumed.final_weights_path(level))
        for name in final_a:
            torch.testing.assert_close(final_a[name], final_b[name], atol=1e-6, rtol=1e-5)


@needs_cuda
def test_stacked_replicates_agree_with_sequential_ones(tmp_path):
    config = tiny_raw(levels=1, seeds=4, controls=["reinit", "random"], train={"iterations": 200})
    sequential = run_on(tmp_path, "sequential", config)
    stacked = run_on(tmp_path, "stacked", config, batch=8)
    assert_runs_close(sequential, stacked, range(1, 2))


@needs_cuda
def test_bf16_and_fp32_give_the_same_verdicts_on_a_small_study(tmp_path):
    """3 seeds (the evidence floor for a verdict), halving the weights per level, a random control.

    On a small test split a verdict whose accuracy bound sits within a few test examples of the
    matching threshold can flip under any change of arithmetic (seen on the CPU: fp32 -0.62 pp,
    bf16 -0.18 pp against the -0.5 pp threshold at 50% remaining), so the labels are compared at
    the levels where fp32's bound is decisive: more than ``DECISIVE`` from the threshold.
    """
    config = tiny_raw(levels=4, seeds=3, controls=["random"], control_levels=[2, 4],
                          prune={"rate": 0.5, "output_rate": 0.5})
    fp32 = run_on(tmp_path, "fp32", config).verdicts()
    bf16 = run_on(tmp_path, "bf16", config, precision="bf16").verdicts()
    assert fp32 is not None and bf16 is not None
    decisive = [r for r in fp32 if r.accuracy is not None and r.accuracy.bound is not None
                and abs(r.accuracy.bound - r.accuracy.null) > DECISIVE]
    assert decisive, "the study has no decisive level to compare"
    for row in decisive:
        assert bf16.row(row.level).label == row.label, (row.level, row.reason, bf16.row(row.level).reason)
