"""Names user code imports keep working across the re-layout (issue 19), and the layout keeps
its promises: no import cycles, a short top level."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_old_extension_point_modules_re_export_the_same_objects():
    import ticketlab.method as old
    import ticketlab.method.base as old_base
    from ticketlab.arms import Arm, ArmContext, StartPoint, resolve_arm
    from ticketlab.pruning import MaskContext, Need, PruningMethod, resolve_method

    new = {"Arm": Arm, "ArmContext": ArmContext, "StartPoint": StartPoint, "MaskContext": MaskContext,
           "Need": Need, "PruningMethod": PruningMethod, "resolve_arm": resolve_arm, "resolve_method": resolve_method}
    for name, obj in new.items():
        assert getattr(old, name) is obj, name
        if hasattr(old_base, name):
            assert getattr(old_base, name) is obj, name
    assert set(old.__all__) == set(new)


def test_a_plugin_written_against_the_old_names_still_runs(tmp_path, monkeypatch):
    """A user's arm importing ``ticketlab.method.base`` (as the README's example did) is found by
    import path and trains."""
    import ticketlab
    from ticketlab.config import RunOptions

    (tmp_path / "old_style_arms.py").write_text(
        "from ticketlab.method.base import ArmContext, StartPoint\n"
        "from ticketlab.arms.ticket import rewound_start\n"
        "class SameAsTicket:\n"
        "    name = 'same_as_ticket'\n"
        "    def mask(self, ticket, ctx: ArmContext):\n"
        "        return ticket\n"
        "    def start(self, mask, ctx: ArmContext) -> StartPoint:\n"
        "        return rewound_start(mask, ctx)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"model": "mlp_16", "levels": 1, "seeds": 1, "controls": ["old_style_arms:SameAsTicket"],
              "data": {"dataset": "digits"}, "train": {"iterations": 20, "eval_every": 10, "batch_size": 32}}
    result = ticketlab.run(config, RunOptions(root=str(tmp_path / "runs"), device="cpu", workers=1, progress=False))
    ticket, same = result.select("ticket", 1)[0], result.select("old_style_arms:SameAsTicket", 1)[0]
    assert ticket["test_acc_at_early_stop"] == same["test_acc_at_early_stop"]  # same mask, same start


@pytest.mark.parametrize("path", [
    "ticketlab:run", "ticketlab:Result", "ticketlab:Config", "ticketlab:RunOptions", "ticketlab:Task",
    "ticketlab:Mask", "ticketlab.bundle:verify", "ticketlab.bundle:make_bundle",
    "ticketlab.arms.weight_shuffle:permute_survivors", "ticketlab.arms.ticket:rewound_start",
    "ticketlab.export.sparse:load_sparse", "ticketlab.export.structured:load_structured",
    "ticketlab.export.ticket:load_torch_prune", "ticketlab.export:to_torch_prune",
    "ticketlab.evidence.verdicts:Criteria", "ticketlab.studies.stability:run_stability",
])
def test_names_the_readme_gives_import(path):
    module, _, name = path.partition(":")
    assert getattr(importlib.import_module(module), name) is not None


def test_the_package_has_no_import_cycles_and_a_short_top_level():
    tool = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if not tool.is_file():
        pytest.skip(f"{tool} is not in this checkout")
    out = subprocess.run([sys.executable, str(tool), str(ROOT / "src"), "ticketlab"], capture_output=True, text=True,
                         check=True).stdout
    assert "import cycles 0" in out, out
    top = int(out.split("top-level modules ")[1].split(";")[0])
    assert top <= 12, out
