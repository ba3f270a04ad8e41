"""Structured (unit) and N:M pruning, against hand-computed oracles, and end to end."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.io import load_tensors
from ticketlab.pruning.n_m import keep_n_of_m
from ticketlab.pruning.structured import mask_inputs_of_removed_units, prune_units

from conftest import cli, tiny_config

FAST = {"iterations": 60, "eval_every": 20}


def test_prune_units_removes_the_lowest_norm_live_rows_exactly():
    weight = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [6.0, 8.0], [0.5, 0.5]])  # norms 5, 1, 2, 10, 0.71
    keep = torch.ones(5, 2, dtype=torch.bool)
    keep[3] = False  # already removed: not live, not counted
    new = prune_units(weight, keep, rate=0.5)  # 4 live rows -> remove 2: rows 4 (0.71) and 1 (1.0)
    assert new.tolist() == [[True, True], [False, False], [True, True], [False, False], [False, False]]
    # only the surviving entries count in a row's norm
    partial = torch.tensor([[True, False], [True, True]])
    assert prune_units(torch.tensor([[1.0, 100.0], [2.0, 2.0]]), partial, rate=0.5).tolist() == [[False, False], [True, True]]


def test_a_removed_units_outgoing_columns_are_masked_including_after_a_flatten():
    producer = torch.ones(3, 4, dtype=torch.bool)
    producer[1] = False
    consumer = torch.ones(5, 3, dtype=torch.bool)
    assert mask_inputs_of_removed_units(producer, consumer)[:, 1].sum() == 0
    assert mask_inputs_of_removed_units(producer, consumer)[:, [0, 2]].all()
    conv = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    conv[0] = False
    flat = mask_inputs_of_removed_units(conv, torch.ones(4, 2 * 9, dtype=torch.bool))  # 2 channels x 3x3 flattened
    assert not flat[:, :9].any() and flat[:, 9:].all()


def test_structured_imp_removes_whole_units_and_keeps_the_outputs(tmp_path):
    result = ticketlab.run(tiny_config(levels=2, controls=["random"], prune={"method": "structured"}, train=FAST),
                           ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    hidden, second, output = "layers.1.weight", "layers.3.weight", "layers.5.weight"
    for level, live in ((1, (51, 26)), (2, (41, 21))):  # 64 -> 51 -> 41 and 32 -> 26 -> 21 units (20% rounded)
        mask = result.mask(level)
        units = {name: mask[name].any(dim=1) for name in (hidden, second)}
        assert tuple(int(units[name].sum()) for name in (hidden, second)) == live
        # a unit is whole or gone: a live unit keeps exactly the inputs that come from live units
        assert mask[hidden][units[hidden]].all() and not mask[hidden][~units[hidden]].any()
        assert torch.equal(mask[second], units[second][:, None] & units[hidden][None, :])
        # the output layer keeps every class and reads only live units
        assert torch.equal(mask[output], units[second][None, :].expand_as(mask[output]))
    # level 2 removed the lowest-norm units of level 1's trained ticket
    trained = load_tensors(result.final_weights_path(1))[hidden]
    before, after = result.mask(1)[hidden].any(dim=1), result.mask(2)[hidden].any(dim=1)
    norms = (trained * result.mask(1)[hidden]).norm(dim=1)
    assert norms[before & ~after].max() <= norms[after].min()


def test_keep_n_of_m_keeps_the_n_largest_survivors_of_every_group():
    scores = torch.tensor([[0.1, -0.9, 0.5, 0.3, 2.0, -1.0, 0.2, 0.0, 7.0, 1.0]])  # groups of 4: 3 groups (last of 2)
    keep = torch.ones_like(scores, dtype=torch.bool)
    two = keep_n_of_m(scores, keep, 2, 4)
    assert two.tolist() == [[False, True, True, False, True, True, False, False, True, True]]
    one = keep_n_of_m(scores, two, 1, 4)  # nested: only the previous survivors compete
    assert one.tolist() == [[False, True, False, False, True, False, False, False, True, False]]
    conv = torch.randn(3, 8, 2, 2)  # [out, in, kh, kw]: at each kernel position, 8 input channels = 2 groups of 4
    mask = keep_n_of_m(conv, torch.ones_like(conv, dtype=torch.bool), 2, 4)
    channels_last = mask.permute(0, 2, 3, 1).reshape(3, 2, 2, 2, 4)  # groups along the input channels
    assert (channels_last.sum(dim=-1) == 2).all()
    for o, i, y, x in [(0, 0, 0, 0), (2, 5, 1, 0)]:  # each kept entry is among its group's 2 largest
        group = conv[o, (i // 4) * 4:(i // 4) * 4 + 4, y, x].abs()
        assert bool(mask[o, i, y, x]) == bool(conv[o, i, y, x].abs() >= group.sort(descending=True).values[1])


def test_nm_levels_reach_2_of_4_and_are_refused_past_m_minus_1(tmp_path, capsys):
    result = ticketlab.run(tiny_config(levels=2, prune={"method": "nm"}, train=FAST),
                           ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    for level, n in ((1, 3), (2, 2)):
        for name, keep in result.mask(level).items():
            rows = keep.flatten(1)
            groups = rows[:, : rows.shape[1] // 4 * 4].reshape(rows.shape[0], -1, 4)
            assert (groups.sum(dim=2) == n).all(), (level, name)
    assert result.mask(2).fraction_remaining() == pytest.approx(0.5, abs=0.01)
    code, out, err = cli(["run", "--dataset", "digits", "--model", "mlp_64_32", "--method", "nm", "--levels", "4",
                          "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 2 and "2:4" in err and len(err.strip().splitlines()) == 1


def test_structured_pruning_is_layerwise_only():
    from ticketlab.experiment.names import resolve_names

    with pytest.raises(ticketlab.ConfigError, match="layerwise"):
        resolve_names(tiny_config(prune={"method": "structured", "strategy": "global"}))
