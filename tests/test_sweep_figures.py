"""The sweep-level figures and table from spectrum records: bounded for 200 trials, one protocol per figure."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from orchestrator.sweep_figures import (MAX_BARS_HEIGHT, MAX_HEIGHT, MAX_WIDTH, SpectrumRow, _by_protocol,
                                        density_curve, latest_per_trial, plot_accuracy, plot_across_grid,
                                        plot_densities, plot_heatmaps, table)

DPI = 110


def _record(protocol: str, epoch: int, lambda_max: float, rng: random.Random) -> dict:
    runs = []
    for _ in range(2):
        nodes = sorted([-0.01 * lambda_max, *(rng.uniform(0, 0.05 * lambda_max) for _ in range(12)), lambda_max])
        weights = np.array([rng.random() for _ in nodes])
        runs.append({"ritz_values": nodes, "weights": (weights / weights.sum()).tolist()})
    return {"protocol": {"id": protocol, "operator": "hessian", "bn_mode": "eval", "steps": 14, "num_vectors": 2,
                         "dtype": "float32", "weights": "iterate", "max_samples": None, "seed": 0, "batch_size": None},
            "runs": runs, "epoch": epoch, "lambda_max": lambda_max, "lambda_min": -0.01 * lambda_max,
            "trace_estimate": 3 * lambda_max, "steps_taken": [14, 14], "steps": 14, "settings": {"batch_size": 1024}}


def _rows(count_per_cell: int = 2) -> list[SpectrumRow]:
    rng = random.Random(0)
    rows = []
    for optimizer in ("sgd", "adam", "gadam", "gadamx"):
        for lr in (1e-3, 3e-3, 1e-2, 3e-2, 0.1):
            for decay in (0.0, 1e-5, 1e-4, 1e-3, 1e-2):
                for seed in range(count_per_cell):
                    label = f"optimizer={optimizer} optimizer.lr={lr} optimizer.weight_decay={decay} trainer.seed={seed}"
                    trial = f"{optimizer}-{lr}-{decay}-{seed}"
                    rows.append(SpectrumRow(trial, "run-" + trial, label, optimizer, lr, decay, 3,
                                            _record("aaaa1111", 3, 10 ** rng.uniform(-1, 2), rng),
                                            {"test_acc": rng.uniform(0.8, 1.0), "test_loss": 0.1, "train_acc": 1.0,
                                             "train_loss": 0.01}))
    return rows


def test_figures_of_200_trials_stay_within_bounds(tmp_path: Path) -> None:
    rows = _rows()
    assert len(rows) == 200
    for plot, max_height in ((plot_densities, MAX_HEIGHT), (plot_heatmaps, MAX_HEIGHT), (plot_accuracy, MAX_HEIGHT),
                             (plot_across_grid, MAX_BARS_HEIGHT)):
        image = imread(plot(rows, "protocol aaaa1111", tmp_path / f"{plot.__name__}.png"))
        height, width = image.shape[:2]
        assert width <= MAX_WIDTH * DPI + 1 and height <= max_height * DPI + 1, plot.__name__


def test_table_has_a_row_per_trial_and_spectrum_with_the_swept_values() -> None:
    rows = _rows(count_per_cell=1)
    columns = table(rows)
    assert len(columns["trial_id"]) == 100
    for key in ("optimizer.lr", "optimizer.weight_decay", "optimizer", "test_acc", "lambda_max", "lambda_min",
                "trace", "steps_taken", "protocol", "weights", "bn_mode", "batch_size"):
        assert key in columns and len(columns[key]) == 100, key


def test_each_trial_shows_its_newest_spectrum_of_each_protocol_apart() -> None:
    rng = random.Random(1)
    base = _rows(count_per_cell=1)[:3]
    older = [SpectrumRow(r.trial_id, r.run_id, r.label, r.optimizer, r.lr, r.weight_decay, 1,
                         _record("aaaa1111", 1, 1.0, rng), r.final) for r in base]
    other = [SpectrumRow(r.trial_id, r.run_id, r.label, r.optimizer, r.lr, r.weight_decay, 3,
                         _record("bbbb2222", 3, 1.0, rng), r.final) for r in base]
    groups = _by_protocol(latest_per_trial([*older, *base, *other]))
    assert set(groups) == {"aaaa1111", "bbbb2222"}
    assert {r.epoch for r in groups["aaaa1111"]} == {3} and len(groups["aaaa1111"]) == 3


def test_density_is_normalised_on_its_grid() -> None:
    record = _record("aaaa1111", 1, 5.0, random.Random(2))
    grid = np.linspace(-1, 6, 500)
    assert abs(np.trapezoid(density_curve(record, grid, 0.05), grid) - 1) < 1e-9
