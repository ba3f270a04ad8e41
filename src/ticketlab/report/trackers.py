"""Experiment trackers: every training's curves, per-layer sparsity and the verdict table, in
TensorBoard and MLflow, where users already look at curves. Off by default
(``RunOptions(trackers=("tensorboard", "mlflow"))``, ``--trackers tensorboard,mlflow``).

Written by the parent process from the store once a run ends, never by the workers: the store
stays the one record (trackers are a view of it, rebuilt whole at each run, so a resumed run's
view is complete and never has a unit twice), and a tracker that fails cannot corrupt an
experiment. TensorBoard gets one event folder per training under ``<experiment>/tensorboard/``;
MLflow one parent run per experiment with a nested run per training, in a file store under
``<experiment>/mlruns`` unless ``MLFLOW_TRACKING_URI`` names the user's own server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketlab.errors import ConfigError

if TYPE_CHECKING:
    from ticketlab.api import Result

CURVES = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")


def check_trackers(trackers: tuple[str, ...]) -> None:
    """One line, before anything trains, when a tracker's library is not installed."""
    for tracker in trackers:
        if importlib.util.find_spec(tracker) is None:  # each tracker's package has its name
            raise ConfigError(f"--trackers {tracker} needs the {tracker} package: pip install 'ticketlab[{tracker}]'")


def unit_label(run: dict[str, Any]) -> str:
    return f"replicate_{run['replicate']}/level_{run['level']:02d}/{run['arm'].replace(':', '_')}"


def log_to_trackers(result: "Result", trackers: tuple[str, ...], verdict_markdown: str) -> None:
    """Write ``result``'s trainings and ``verdict_markdown`` to each of ``trackers``."""
    for tracker in trackers:
        {"tensorboard": _tensorboard, "mlflow": _mlflow}[tracker](result, verdict_markdown)


def _curves(result: "Result", run: dict[str, Any]) -> list[dict[str, Any]]:
    return result.metrics(run["level"], run["replicate"], run["arm"])


def _tensorboard(result: "Result", verdict_markdown: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    root = Path(result.directory) / "tensorboard"
    shutil.rmtree(root, ignore_errors=True)  # a view of the store, rebuilt whole
    for run in result.runs:
        with SummaryWriter(log_dir=str(root / unit_label(run))) as writer:
            for record in _curves(result, run):
                for key in CURVES:
                    if record.get(key) is not None:
                        writer.add_scalar(key, record[key], record["step"])
            for layer, percent in (run.get("layer_percent_remaining") or {}).items():
                writer.add_scalar(f"percent_remaining/{layer}", percent, run["level"])
    with SummaryWriter(log_dir=str(root / "verdicts")) as writer:
        writer.add_text("verdicts", verdict_markdown)


def _mlflow(result: "Result", verdict_markdown: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    directory = Path(result.directory)
    if "MLFLOW_TRACKING_URI" not in os.environ:  # MLflow's file store: no database to install; it is
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # in maintenance mode, so say yes to it
        mlflow.set_tracking_uri((directory / "mlruns").resolve().as_uri())
    experiment = mlflow.set_experiment(directory.name)
    client, tag = MlflowClient(), {"ticketlab.directory": str(directory.resolve())}
    for old in client.search_runs([experiment.experiment_id], filter_string=f"tags.`ticketlab.directory` = "
                                  f"'{tag['ticketlab.directory']}'"):
        client.delete_run(old.info.run_id)  # the view is rebuilt whole: an earlier run's trainings go
    config = result.config
    with mlflow.start_run(run_name=directory.name, tags=tag):
        mlflow.log_params({"method": config.prune.method, "dataset": config.data.dataset, "model": config.model,
                           "levels": config.levels, "seeds": len({r["replicate"] for r in result.runs})})
        mlflow.log_text(verdict_markdown, "verdicts.md")
        for run in result.runs:
            with mlflow.start_run(run_name=unit_label(run), nested=True, tags=tag):
                mlflow.log_params({"replicate": run["replicate"], "level": run["level"], "arm": run["arm"],
                                   "percent_remaining": run["percent_remaining"]})
                for record in _curves(result, run):
                    values = {k: record[k] for k in CURVES if record.get(k) is not None}
                    if values:
                        mlflow.log_metrics(values, step=record["step"])
                sparsity = {f"percent_remaining.{layer}": p
                            for layer, p in (run.get("layer_percent_remaining") or {}).items()}
                if sparsity:
                    mlflow.log_metrics(sparsity)
