"""`ticketlab compare`: accuracy at equal sparsity across methods, with each one's cost."""

from __future__ import annotations

import pytest

import ticketlab
from ticketlab.report.compare import accuracy_table, column_flops, load_columns, sparsity_rows

from conftest import cli, tiny_config


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    options = ticketlab.RunOptions(root=str(root), device="cpu", progress=False, workers=1)
    short = {"iterations": 40, "eval_every": 20}
    imp = ticketlab.run(tiny_config(levels=2, seeds=2, train=short), options)
    at_init = ticketlab.run(tiny_config(levels=2, seeds=2, controls=["random"], prune={"method": "random_init"},
                                        train=short), options)
    return imp, at_init


def test_rows_pair_equal_sparsities_and_cost_comes_from_the_runs(two_methods):
    imp, at_init = two_methods
    columns = load_columns([imp.directory, at_init.directory])
    assert [c.label for c in columns] == ["magnitude", "random_init"]
    rows = sparsity_rows(columns)
    assert len(rows) == 3  # dense, level 1, level 2: layerwise IMP and global pruning within 1% of each other
    for row, level in zip(rows, (0, 1, 2)):
        for result in (imp, at_init):
            assert all(row[0] <= r["percent_remaining"] <= row[1] for r in result.select(level=level))
    imp_cost, init_cost = (c.cost(column_flops(c.result)) for c in columns)
    assert imp_cost["trainings"] == "6" and init_cost["trainings"] == "10"  # 2 seeds x (dense + 2 levels x (ticket + random))
    assert imp_cost["optimizer steps"] == f"{6 * 40}"
    assert imp_cost["trainings per ticket at the sparsest level"] == "3"
    assert init_cost["trainings per ticket at the sparsest level"] == "1"
    # FLOPs: mlp_64_32 on 8x8 digits does 2 x (64*64 + 64*32 + 32*10) per example forward; a step is
    # 3 forwards of a 32-example batch
    dense_forward = 2 * (64 * 64 + 64 * 32 + 32 * 10)
    assert float(imp_cost["training FLOPs as run"]) == pytest.approx(6 * 40 * 3 * 32 * dense_forward, rel=5e-3)
    sizes = {"layers.1.weight": 64 * 64, "layers.3.weight": 64 * 32, "layers.5.weight": 32 * 10}
    remaining = sum(2 * sum(sizes[n] * p / 100 for n, p in r["layer_percent_remaining"].items())
                    for r in imp.runs) * 40 * 3 * 32
    assert float(imp_cost["training FLOPs at the masks' density"]) == pytest.approx(remaining, rel=5e-3)  # printed to 3 digits
    level_2 = columns[0].accuracy(rows[2])
    expected = [r["test_acc_at_early_stop"] for r in imp.select("ticket", 2)]
    assert level_2.n == 2 and level_2.mean == pytest.approx(sum(expected) / 2)


def test_cli_compare_prints_the_three_tables_and_refuses_non_experiments(two_methods, capsys, tmp_path):
    imp, at_init = two_methods
    code, out, err = cli(["compare", str(imp.directory), str(at_init.directory)], capsys)
    assert code == 0, err
    assert "| % remaining | magnitude | random_init |" in out
    assert "| random_init |" in out and "trainings per ticket" in out
    assert "random_init keep IMP's total count but rank scores across layers: the output layer has no rate of " \
           "its own (IMP prunes it at output_rate = 0.1)" in out
    code, _, err = cli(["compare", str(tmp_path)], capsys)
    assert code == 2 and "not a ticketlab experiment" in err


def test_report_shows_the_comparison_view(two_methods, capsys):
    imp, at_init = two_methods
    code, out, err = cli(["report", str(imp.directory), "--compare", str(at_init.directory)], capsys)
    assert code == 0, err
    page = (imp.directory / "report" / "report.html").read_text()
    assert "<h2>Comparison</h2>" in page and "random_init" in page and "training FLOPs as run" in page
    # every accuracy cell compare prints is on the page
    columns = load_columns([imp.directory, at_init.directory])
    assert all(f">{cell}<" in page for row in accuracy_table(columns).rows for cell in row)
