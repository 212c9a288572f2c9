"""Spectra of a trial's checkpoints: rebuild the model from the run, run the curvature engine, log the results.

Runs as its own Ray task after the trial's training task has released its resources, so that a sharded job's
gang of workers never waits on the trial that asked for it.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import traceback
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from mlflow.entities import RunTag

from workers.curvature.job import SpectrumSettings, compute_spectrum
from workers.curvature.plots import plot_density
from workers.curvature.result import SpectrumResult
from workers.artifacts import SPECTRUM_DIR
from workers.run_logger import SPECTRUM_NODES_TAG, RunLogger
from workers.spec import SpectrumJobSpec, TrialOutcome
from workers.training.checkpoint_store import CheckpointStore
from workers.training.data import load_dataset
from workers.training.models import build_model

# Keys of the ``spectrum`` config node that SpectrumSettings takes.
SETTINGS_KEYS = ("steps", "num_vectors", "seed", "distribution", "operator", "bn_mode", "dtype", "num_workers",
                 "gpus_per_worker", "cpus_per_worker", "max_samples", "batch_size", "basis_device")


def settings_from(config: Mapping[str, Any]) -> SpectrumSettings:
    spectrum = config["spectrum"]
    return SpectrumSettings(**{key: spectrum[key] for key in SETTINGS_KEYS}, device=_device(config))


def _device(config: Mapping[str, Any]) -> str:
    device = str(config["trainer"]["device"])
    return "cuda" if device.startswith("cuda") else device


def run_spectrum_job(spec: SpectrumJobSpec) -> TrialOutcome:
    logger = RunLogger(spec.tracking, spec.run_id)
    trial_id = logger.client.get_run(spec.run_id).data.tags.get("trial_id", spec.run_id)
    try:
        metrics = _compute_and_log(spec, logger)
    except Exception as error:  # noqa: BLE001 - recorded on the run like any trial error
        message = f"{type(error).__name__}: {error}"
        if spec.finishes_trial:
            logger.fail(message, traceback.format_exc())
        return TrialOutcome(trial_id, spec.run_id, "FAILED", {}, message)
    if spec.finishes_trial:
        logger.finish()
    return TrialOutcome(trial_id, spec.run_id, "FINISHED", metrics)


def _compute_and_log(spec: SpectrumJobSpec, logger: RunLogger) -> dict[str, float]:
    config = spec.config
    settings = settings_from(config)
    torch.set_num_threads(max(1, int(settings.cpus_per_worker)))
    splits = load_dataset(config["dataset"])
    model = build_model(config["model"], splits.input_shape, splits.num_classes)
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="spectrum-") as scratch:
        store = CheckpointStore(logger.artifacts(), Path(scratch), keep=1)
        for epoch in spec.epochs:
            model.load_state_dict(store.load(epoch).model)
            result = shifted_by_l2(compute_spectrum(model, F.cross_entropy, splits.train_inputs, splits.train_targets,
                                                    settings), l2_coefficient(config))
            # The fewest steps any run took: below spectrum.steps it flags a run that stopped at invariance.
            metrics = {"lambda_max": result.lambda_max, "lambda_min": result.lambda_min,
                       "trace_estimate": result.trace_estimate, "lanczos_steps": float(min(result.steps_taken))}
            logger.log_metrics(epoch, metrics, [RunTag(SPECTRUM_NODES_TAG, ",".join(result.nodes))] if result.nodes else ())
            _log_artifacts(logger, result, settings, config, epoch, Path(scratch))
    return metrics


def l2_coefficient(config: Mapping[str, Any]) -> float:
    """gamma of the coupled L2 term gamma/2 ||w||^2 in the training objective (0 for decoupled decay)."""
    optimizer = config["optimizer"]
    return 0.0 if optimizer["name"] in ("adamw", "gadam", "gadamx") else float(optimizer["weight_decay"])


def shifted_by_l2(result: SpectrumResult, gamma: float) -> SpectrumResult:
    """The spectrum of the regularised objective: its Hessian is H + gamma*I. Lanczos is shift invariant (the
    same seed vectors span the same Krylov spaces), so this is exact, not an approximation."""
    if gamma == 0.0:
        return result
    return dataclasses.replace(result, runs=tuple(dataclasses.replace(run, alphas=run.alphas + gamma)
                                                  for run in result.runs))


def _log_artifacts(logger: RunLogger, result: SpectrumResult, settings: SpectrumSettings, config: Mapping[str, Any],
                   epoch: int, scratch: Path) -> None:
    record = {**result.to_dict(), "epoch": epoch, "settings": vars(settings), "l2_shift": l2_coefficient(config)}
    json_path = scratch / f"epoch_{epoch}.json"
    json_path.write_text(json.dumps(record))
    logger.log_artifact(json_path, SPECTRUM_DIR)
    png = plot_density(result, scratch / f"epoch_{epoch}.png",
                       title=f"{config['model']['name']} / {config['optimizer']['name']}, epoch {epoch}")
    logger.log_artifact(png, SPECTRUM_DIR)
