"""The sweep-level picture of its spectra, on the parent run: one set of figures per protocol, never mixed.

From every trial run's spectrum records (``spectrum/<protocol>/epoch_<n>.json``) the parent run gets, under
``spectrum/<protocol>/``: the densities of all trials overlaid (a panel per optimizer, colour by weight decay),
lambda_max and trace heatmaps over learning rate x weight decay, final test accuracy against lambda_max and
lambda_max across the grid; and ``spectrum/spectra_table.json``, a table (MLflow's ``log_table`` format) with a row
per trial and spectrum. Sizes are bounded so that a 200-trial grid stays readable.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

from orchestrator.planning import Trial
from orchestrator.status import distinguishing
from workers.artifacts import SPECTRUM_DIR, spectrum_epochs_done, spectrum_record_name
from workers.spectrum_protocol import AVERAGE

TABLE = f"{SPECTRUM_DIR}/spectra_table.json"
READERS = 8
# Figure sizes in inches, whatever the number of trials (the bar chart's bars need more height: 200 at 0.13 in).
MAX_WIDTH, MAX_HEIGHT, MAX_BARS_HEIGHT = 18.0, 14.0, 28.0
# Heatmap cells get their value written in them up to this many per panel.
ANNOTATE_CELLS = 64
GRID_POINTS = 600


@dataclass(frozen=True)
class SpectrumRow:
    """One trial's spectrum at one epoch under one protocol, with the trial's coordinates and final metrics."""

    trial_id: str
    run_id: str
    label: str
    optimizer: str
    lr: float
    weight_decay: float
    epoch: int
    record: dict[str, Any]
    # The trial's final metrics for the weights the spectrum is of (test_acc_avg as test_acc for averaged weights).
    final: dict[str, Optional[float]]

    @property
    def protocol(self) -> str:
        return self.record["protocol"]["id"]

    @property
    def weights(self) -> str:
        return self.record["protocol"]["weights"]


def log_sweep_spectra(client: MlflowClient, parent_run_id: str, trials: Sequence[Trial],
                      runs: Mapping[str, Run]) -> list[str]:
    """Log the sweep's spectrum figures and table on its parent run; returns the artifact paths written (none when
    no trial has a spectrum). Idempotent: a second call replaces what the first wrote."""
    rows = collect_rows(client, trials, runs)
    if not rows:
        return []
    written = []
    with tempfile.TemporaryDirectory(prefix="sweep-figures-") as scratch_dir:
        scratch = Path(scratch_dir)
        for protocol, group in _by_protocol(latest_per_trial(rows)).items():
            out = scratch / protocol
            out.mkdir()
            title = _protocol_title(group)
            paths = [plot_densities(group, title, out / "densities.png"),
                     plot_heatmaps(group, title, out / "heatmaps.png"),
                     plot_accuracy(group, title, out / "accuracy_vs_lambda_max.png"),
                     plot_across_grid(group, title, out / "lambda_max_across_grid.png")]
            (out / "lambda_max_across_grid.json").write_text(json.dumps({r.label: r.record["lambda_max"] for r in group}))
            paths.append(out / "lambda_max_across_grid.json")
            for path in paths:
                client.log_artifact(parent_run_id, str(path), f"{SPECTRUM_DIR}/{protocol}")
                written.append(f"{SPECTRUM_DIR}/{protocol}/{path.name}")
        _log_table(client, parent_run_id, table(rows), scratch / "spectra_table.json")
        written.append(TABLE)
    return written


def collect_rows(client: MlflowClient, trials: Sequence[Trial], runs: Mapping[str, Run]) -> list[SpectrumRow]:
    """Every spectrum record of the sweep's trial runs (read concurrently), as rows."""
    labels = dict(zip([t.trial_id for t in trials], distinguishing([t.overrides for t in trials])))
    present = [t for t in trials if t.trial_id in runs]

    def read(trial: Trial) -> list[SpectrumRow]:
        run = runs[trial.trial_id]
        return [_row(trial, run, labels[trial.trial_id] or trial.trial_id, record)
                for record in _records(client, run.info.run_id)]

    with ThreadPoolExecutor(READERS) as pool:
        return [row for rows in pool.map(read, present) for row in rows]


def _records(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for directory in client.list_artifacts(run_id, SPECTRUM_DIR):
            if not directory.is_dir:
                continue
            names = [Path(f.path).name for f in client.list_artifacts(run_id, directory.path)]
            for epoch in sorted(spectrum_epochs_done(names)):
                path = client.download_artifacts(run_id, f"{directory.path}/{spectrum_record_name(epoch)}", scratch)
                record = json.loads(Path(path).read_text())
                if "protocol" in record:
                    records.append(record)
    return records


def _row(trial: Trial, run: Run, label: str, record: dict[str, Any]) -> SpectrumRow:
    optimizer = trial.config.optimizer
    suffix = "_avg" if record["protocol"]["weights"] == AVERAGE else ""
    metrics = run.data.metrics
    final = {name: metrics.get(name + suffix) for name in ("test_acc", "test_loss", "train_acc", "train_loss")}
    return SpectrumRow(trial.trial_id, run.info.run_id, label, optimizer.name, optimizer.lr,
                       optimizer.weight_decay, int(record["epoch"]), record, final)


def latest_per_trial(rows: Sequence[SpectrumRow]) -> list[SpectrumRow]:
    """Each trial's newest spectrum of each protocol: what the comparison figures show."""
    newest: dict[tuple[str, str], SpectrumRow] = {}
    for row in rows:
        key = (row.trial_id, row.protocol)
        if key not in newest or row.epoch > newest[key].epoch:
            newest[key] = row
    return list(newest.values())


def _by_protocol(rows: Sequence[SpectrumRow]) -> dict[str, list[SpectrumRow]]:
    grouped: dict[str, list[SpectrumRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.optimizer, r.lr, r.weight_decay, r.label)):
        grouped[row.protocol].append(row)
    return dict(grouped)


def _protocol_title(rows: Sequence[SpectrumRow]) -> str:
    protocol = rows[0].record["protocol"]
    epochs = sorted({r.epoch for r in rows})
    shown = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    return (f"protocol {protocol['id']}: {protocol['operator']}, BN {protocol['bn_mode']}, {protocol['steps']} steps x "
            f"{protocol['num_vectors']} vectors,\n{protocol['dtype']}, {protocol['weights']} weights; {shown}")


# --- figures -----------------------------------------------------------------------------------------------------
def _figure(width: float, height: float, max_height: float = MAX_HEIGHT) -> Figure:
    figure = Figure(figsize=(min(width, MAX_WIDTH), min(height, max_height)), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def _panels(figure: Figure, count: int, columns: int) -> list[Any]:
    rows = math.ceil(count / columns)
    return [figure.add_subplot(rows, columns, i + 1) for i in range(count)]


def _optimizers(rows: Sequence[SpectrumRow]) -> dict[str, list[SpectrumRow]]:
    grouped: dict[str, list[SpectrumRow]] = defaultdict(list)
    for row in rows:
        grouped[row.optimizer].append(row)
    return dict(sorted(grouped.items()))


def _decay_colours(rows: Sequence[SpectrumRow]) -> dict[float, Any]:
    """One colour per weight decay value of the sweep (0 in grey), ordered as the values are."""
    decays = sorted({r.weight_decay for r in rows})
    positive = [d for d in decays if d > 0]
    cmap = colormaps["viridis"]
    colours: dict[float, Any] = {0.0: (0.45, 0.45, 0.45, 1.0)} if 0.0 in decays else {}
    for i, decay in enumerate(positive):
        colours[decay] = cmap(i / max(len(positive) - 1, 1) * 0.9)
    return colours


def density_curve(record: Mapping[str, Any], grid: np.ndarray, sigma: float) -> np.ndarray:
    """The broadened SLQ density of one record on ``grid`` (workers/curvature/density.py, in numpy: the control
    plane does not import torch)."""
    curves = []
    for run in record["runs"]:
        nodes, weights = np.asarray(run["ritz_values"]), np.asarray(run["weights"])
        kernel = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        curves.append(kernel @ weights)
    density = np.mean(curves, axis=0)
    mass = np.trapezoid(density, grid)
    return density / mass if mass > 0 else density


def plot_densities(rows: Sequence[SpectrumRow], title: str, path: Path) -> Path:
    """All trials' densities overlaid, a panel per optimizer (its own eigenvalue range), colour by weight decay;
    thin translucent lines, so that dozens of curves per panel still show where they agree."""
    by_optimizer = _optimizers(rows)
    colours = _decay_colours(rows)
    columns = min(len(by_optimizer), 3)
    figure = _figure(5.5 * columns, 4.0 * math.ceil(len(by_optimizer) / columns) + 0.6)
    for axes, (optimizer, group) in zip(_panels(figure, len(by_optimizer), columns), by_optimizer.items()):
        low = min(r.record["lambda_min"] for r in group)
        high = max(r.record["lambda_max"] for r in group)
        span = high - low if high > low else max(abs(high), 1.0)
        sigma = span / 150
        grid = np.linspace(low - 8 * sigma, high + 8 * sigma, GRID_POINTS)
        alpha = float(np.clip(6.0 / len(group), 0.2, 0.9))
        peak = 0.0
        for row in group:
            density = density_curve(row.record, grid, sigma)
            peak = max(peak, float(density.max()))
            axes.plot(grid, np.maximum(density, 1e-300), color=colours[row.weight_decay], alpha=alpha, linewidth=0.9)
        axes.set_yscale("log")
        axes.set_ylim(max(peak * 1e-7, 1e-300), peak * 3)
        axes.set_title(f"{optimizer} ({len(group)} trials)", fontsize=10)
        axes.set_xlabel("eigenvalue")
        axes.set_ylabel("spectral density")
    handles = [Line2D([], [], color=colour, label=f"wd {_fmt(decay)}") for decay, colour in sorted(colours.items())]
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, title="weight decay")
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def _cells(group: Sequence[SpectrumRow], value: str) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """lr x weight decay grid of the median of ``value`` over the trials in each cell (other swept keys, e.g.
    seeds, put several trials in a cell), and the count per cell."""
    lrs = sorted({r.lr for r in group})
    decays = sorted({r.weight_decay for r in group})
    values: dict[tuple[int, int], list[float]] = defaultdict(list)
    for row in group:
        values[(decays.index(row.weight_decay), lrs.index(row.lr))].append(float(row.record[value]))
    grid = np.full((len(decays), len(lrs)), np.nan)
    counts = np.zeros((len(decays), len(lrs)), dtype=int)
    for (i, j), cell in values.items():
        grid[i, j] = float(np.median(cell))
        counts[i, j] = len(cell)
    return lrs, decays, grid, counts


def plot_heatmaps(rows: Sequence[SpectrumRow], title: str, path: Path) -> Path:
    """lambda_max (top) and trace (bottom) over learning rate x weight decay, a column per optimizer."""
    by_optimizer = _optimizers(rows)
    metrics = (("lambda_max", "lambda_max"), ("trace_estimate", "trace"))
    columns = len(by_optimizer)
    figure = _figure(4.8 * columns + 0.5, 3.8 * len(metrics) + 0.6)
    for m, (key, name) in enumerate(metrics):
        for c, (optimizer, group) in enumerate(by_optimizer.items()):
            axes = figure.add_subplot(len(metrics), columns, m * columns + c + 1)
            lrs, decays, grid, counts = _cells(group, key)
            finite = grid[np.isfinite(grid)]
            norm = (LogNorm(finite.min(), finite.max()) if finite.size and finite.min() > 0
                    and finite.max() / finite.min() > 30 else Normalize(finite.min(), finite.max()))
            image = axes.imshow(grid, origin="lower", aspect="auto", cmap="magma", norm=norm)
            figure.colorbar(image, ax=axes, shrink=0.85)
            _ticks(axes, lrs, decays)
            if grid.size <= ANNOTATE_CELLS:
                for (i, j), value in np.ndenumerate(grid):
                    if np.isfinite(value):
                        text = _fmt(value) + (f"\n(n={counts[i, j]})" if counts[i, j] > 1 else "")
                        axes.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if
                                  norm(value) < 0.6 else "black")
            axes.set_title(f"{name}: {optimizer}", fontsize=10)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def _ticks(axes: Any, lrs: Sequence[float], decays: Sequence[float]) -> None:
    """Every value labelled up to 16 per axis, every k-th beyond, so that a long grid's labels never overlap."""
    for values, set_ticks, label in ((lrs, axes.set_xticks, "learning rate"), (decays, axes.set_yticks, "weight decay")):
        stride = max(1, math.ceil(len(values) / 16))
        positions = list(range(0, len(values), stride))
        set_ticks(positions, [_fmt(values[p]) for p in positions], fontsize=7)
    axes.set_xlabel("learning rate")
    axes.set_ylabel("weight decay")
    axes.tick_params(axis="x", labelrotation=45)


def plot_accuracy(rows: Sequence[SpectrumRow], title: str, path: Path) -> Path:
    """Final test accuracy (of the weights the spectrum is of) against lambda_max; colour by optimizer, marker
    size by weight decay rank."""
    figure = _figure(7.5, 5.0)
    axes = figure.add_subplot()
    by_optimizer = _optimizers(rows)
    cmap = colormaps["tab10"]
    decays = sorted({r.weight_decay for r in rows})
    for i, (optimizer, group) in enumerate(by_optimizer.items()):
        shown = [r for r in group if r.final.get("test_acc") is not None]
        sizes = [14 + 40 * decays.index(r.weight_decay) / max(len(decays) - 1, 1) for r in shown]
        axes.scatter([r.record["lambda_max"] for r in shown], [r.final["test_acc"] for r in shown], s=sizes,
                     color=cmap(i % 10), alpha=0.75, label=optimizer, edgecolors="none")
    values = [r.record["lambda_max"] for r in rows]
    if min(values) > 0 and max(values) / min(values) > 30:
        axes.set_xscale("log")
    axes.set_xlabel("lambda_max")
    axes.set_ylabel("final test accuracy")
    axes.legend(fontsize=8, title="optimizer (size: weight decay)", title_fontsize=8)
    axes.set_title(title, fontsize=9)
    return _save(figure, path)


def plot_across_grid(rows: Sequence[SpectrumRow], title: str, path: Path) -> Path:
    """lambda_max of every trial as a bar, sorted by label; bar height and font shrink with the number of trials
    so that 200 fit a bounded figure."""
    ordered = sorted(rows, key=lambda r: r.label)
    count = len(ordered)
    figure = _figure(8.0, (0.13 if count > 40 else 0.35) * count + 1.6, MAX_BARS_HEIGHT)
    axes = figure.add_subplot()
    values = [r.record["lambda_max"] for r in ordered]
    axes.barh(range(count), values, color=[_optimizer_colour(r.optimizer, rows) for r in ordered])
    axes.set_yticks(range(count), [_short(r.label) for r in ordered], fontsize=8 if count <= 40 else 6)
    axes.set_ylim(count - 0.5, -0.5)
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
    axes.set_xlabel("lambda_max")
    axes.set_title(title, fontsize=9)
    return _save(figure, path)


def _short(label: str) -> str:
    """``optimizer.weight_decay=0.01`` -> ``weight_decay=0.01``: the leaf names tell a sweep's axes apart."""
    return " ".join(part.split("=", 1)[0].rsplit(".", 1)[-1] + "=" + part.split("=", 1)[1] if "=" in part else part
                    for part in label.split())


def _optimizer_colour(optimizer: str, rows: Sequence[SpectrumRow]) -> Any:
    return colormaps["tab10"](sorted({r.optimizer for r in rows}).index(optimizer) % 10)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


# --- the table ---------------------------------------------------------------------------------------------------
def table(rows: Sequence[SpectrumRow]) -> dict[str, list[Any]]:
    """A row per trial and spectrum: swept values, final metrics, the spectrum's numbers and its protocol."""
    ordered = sorted(rows, key=lambda r: (r.protocol, r.label, r.epoch))
    swept = _swept_columns(ordered)
    columns: dict[str, list[Any]] = defaultdict(list)
    for row in ordered:
        record, protocol = row.record, row.record["protocol"]
        values = {"trial_id": row.trial_id, "run_id": row.run_id, "overrides": row.label, **swept[row.trial_id],
                  "optimizer": row.optimizer, "lr": row.lr, "weight_decay": row.weight_decay, "epoch": row.epoch,
                  "weights": row.weights, **row.final, "lambda_max": record["lambda_max"],
                  "lambda_min": record["lambda_min"], "trace": record["trace_estimate"],
                  "trace_stderr": record.get("trace_stderr"), "steps_taken": min(record["steps_taken"]),
                  "steps": record["steps"], "protocol": protocol["id"], "operator": protocol["operator"],
                  "bn_mode": protocol["bn_mode"], "batch_size": record.get("settings", {}).get("batch_size"),
                  "max_samples": protocol["max_samples"], "num_vectors": protocol["num_vectors"],
                  "dtype": protocol["dtype"], "seed": protocol["seed"], "l2_shift": record.get("l2_shift")}
        for key, value in values.items():
            columns[key].append(value)
    return dict(columns)


def _swept_columns(rows: Sequence[SpectrumRow]) -> dict[str, dict[str, str]]:
    """Each trial's differing overrides as columns (``optimizer.lr`` -> its value), beside the fixed ones."""
    swept: dict[str, dict[str, str]] = {}
    keys: set[str] = set()
    for row in rows:
        pairs = dict(part.split("=", 1) for part in row.label.split() if "=" in part)
        swept[row.trial_id] = pairs
        keys.update(pairs)
    return {tid: {key: pairs.get(key, "") for key in sorted(keys)} for tid, pairs in swept.items()}


def _log_table(client: MlflowClient, run_id: str, data: dict[str, list[Any]], path: Path) -> None:
    """``MlflowClient.log_table``'s file and tag, but replacing the table: log_table appends to an existing one,
    and the sweep's table is rewritten whole each time its spectra change."""
    import pandas as pd

    pd.DataFrame(data).to_json(path, orient="split", index=False, date_format="iso")
    client.log_artifact(run_id, str(path), SPECTRUM_DIR)
    logged = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": TABLE, "type": "table"}
    if entry not in logged:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))
