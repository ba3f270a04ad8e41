"""Names user code imports keep working across the re-layout (issue 19), and the layout keeps
its promises: no import cycles, a short top level."""

from __future__ import annotations

import ast
import importlib
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


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at module level or inside functions; imports
    under ``if TYPE_CHECKING:`` are left out, as they never run)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:  # the longest known module a dotted name starts with
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for b in node.body for n in ast.walk(b)}
        targets = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
        graph[module] = {o for t in targets if t.split(".")[0] == package.name and (o := owner(t)) and o != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycles_and_a_short_top_level():
    """The layout's promise (docs/architecture.md): no import cycles, at most 12 top-level modules."""
    package = ROOT / "src" / "ticketlab"
    assert _cycles(_import_graph(package)) == []
    top_level = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    assert len(top_level) <= 12, sorted(top_level)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check above can fail: a two-module cycle (one import inside a function) is found."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import g\n")
    assert _cycles(_import_graph(package)) == [["pkg.a", "pkg.b"]]
