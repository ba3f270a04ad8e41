"""Evidence for humans: figures and a self-contained HTML report of an experiment.

``write_report(experiment_dir)`` is the entry point (the ``ticketlab report`` command);
``write_figures(result, out_dir)`` draws only the PNGs. The figures module pulls in
matplotlib, so it is loaded on first use rather than whenever the CLI starts.
"""

from __future__ import annotations

from typing import Any

from ticketlab.report.html import write_report

__all__ = ["write_figures", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_figures":
        from ticketlab.report.figures import write_figures

        return write_figures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
