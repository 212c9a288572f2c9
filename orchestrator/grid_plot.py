"""A metric of every trial across the grid, as a figure on the sweep's parent run (e.g. lambda_max vs gamma)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from orchestrator.planning import Trial
from orchestrator.status import distinguishing


def trial_labels(trials: Sequence[Trial]) -> dict[str, str]:
    """Each trial's overrides, less those every trial shares (its id when nothing differs)."""
    labels = distinguishing([t.overrides for t in trials])
    return {t.trial_id: label or t.trial_id for t, label in zip(trials, labels)}


def plot_metric(labels: Sequence[str], values: Sequence[float], metric: str, path: Path) -> Path:
    figure = Figure(figsize=(7, 0.4 * len(labels) + 1.5), layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(range(len(labels)), values)
    axes.set_yticks(range(len(labels)), labels)
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
    axes.set_xlabel(metric)
    axes.invert_yaxis()
    figure.savefig(path, dpi=120)
    return path


def log_metric_across_grid(client: MlflowClient, parent_run_id: str, trials: Sequence[Trial],
                           runs: Mapping[str, Run], metric: str) -> bool:
    """Log ``spectrum/<metric>_across_grid.png`` on the parent run; False when no trial has the metric."""
    labels = trial_labels(trials)
    rows = sorted((labels[t.trial_id], runs[t.trial_id].data.metrics[metric]) for t in trials
                  if t.trial_id in runs and metric in runs[t.trial_id].data.metrics)
    if not rows:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        path = plot_metric([r[0] for r in rows], [r[1] for r in rows], metric, Path(scratch) / f"{metric}_across_grid.png")
        client.log_artifact(parent_run_id, str(path), "spectrum")
    client.log_dict(parent_run_id, dict(rows), f"spectrum/{metric}_across_grid.json")
    return True
