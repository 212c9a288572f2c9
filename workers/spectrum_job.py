"""Spectra of a trial's checkpoints: rebuild the model from the run, run the curvature engine, log the results.

Runs as its own Ray task after the trial's training task has released its resources, so that a sharded job's
gang of workers never waits on the trial that asked for it. Each result is keyed by (trial, checkpoint epoch,
protocol) (workers/spectrum_protocol.py): one that the run already holds is not computed again, so a retried job
and `sweep spectrum` over a sweep do only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import traceback
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from mlflow.entities import RunTag
from torch import nn

from workers.curvature.job import SpectrumSettings, compute_spectrum
from workers.config_rules import spectrum_device
from workers.config_structure import trial_config_from
from workers.curvature.plots import plot_density
from workers.curvature.result import SpectrumResult
from workers.artifacts import TRIAL_CONFIG, spectrum_dir, spectrum_epochs_done, spectrum_record_name
from workers.run_logger import RunLogger
from workers.run_artifacts import RunArtifacts
from workers.spec import SpectrumJobSpec, TrialOutcome
from workers.vocabulary import SPECTRUM_NODES_TAG, TRIAL_TAG, RunStatus
from workers.spectrum_progress import ArtifactProgress
from workers.spectrum_protocol import AVERAGE, METRICS, SpectrumProtocol, batch_size_of, home_protocols, protocols_of
from workers.training.averaging import recompute_batchnorm
from workers.training.checkpoint import TrainingState
from workers.training.checkpoint_store import CheckpointStore
from workers.training.data import load_dataset
from workers.training.models import build_model
from workers.training.optimizers import l2_coefficient
from workers.trial_config import TrialConfig

# Keys of the ``spectrum`` group that SpectrumSettings takes as they are.
SETTINGS_KEYS = ("steps", "num_vectors", "seed", "distribution", "operator", "bn_mode", "dtype", "num_workers",
                 "gpus_per_worker", "cpus_per_worker", "max_samples", "basis_device")


def settings_from(config: TrialConfig) -> SpectrumSettings:
    return SpectrumSettings(**{key: getattr(config.spectrum, key) for key in SETTINGS_KEYS},
                            batch_size=batch_size_of(config), device=spectrum_device(config.trainer.device))


def run_spectrum_job(spec: SpectrumJobSpec) -> TrialOutcome:
    logger = RunLogger.for_run(spec.tracking, spec.run_id, spec.config.tracking)
    trial_id = logger.client.get_run(spec.run_id).data.tags.get(TRIAL_TAG, spec.run_id)
    try:
        with logger.beating():
            metrics = _compute_and_log(spec, logger)
    except Exception as error:  # noqa: BLE001 - recorded on the run like any trial error
        message = f"{type(error).__name__}: {error}"
        if spec.finishes_trial:
            logger.fail(message, traceback.format_exc())
        return TrialOutcome(trial_id, spec.run_id, RunStatus.FAILED, {}, message)
    if spec.finishes_trial:
        logger.finish()
    return TrialOutcome(trial_id, spec.run_id, RunStatus.FINISHED, metrics)


def _compute_and_log(spec: SpectrumJobSpec, logger: RunLogger) -> dict[str, float]:
    """Every (epoch, protocol) result the run lacks, computed and logged; returns the metrics logged (a later
    epoch's overwrite an earlier one's)."""
    config = spec.config
    settings = settings_from(config)
    protocols = protocols_of(config)
    artifacts = logger.artifacts()
    todo = _missing(artifacts, protocols, spec.epochs)
    if not todo:
        return {}
    torch.set_num_threads(max(1, int(settings.cpus_per_worker)))
    splits = load_dataset(config.dataset)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="spectrum-") as scratch_dir:
        scratch = Path(scratch_dir)
        home = home_protocols(_stored_config(artifacts, scratch) or config)
        store = CheckpointStore(artifacts, scratch, keep=1)
        for epoch in sorted({e for e, _ in todo}):
            state = store.load(epoch)
            for protocol in (p for e, p in todo if e == epoch):
                network = _network(protocol, state, model, splits.train_inputs, config)
                if network is None:
                    continue
                progress = ArtifactProgress(artifacts, protocol.id, epoch, scratch, config.spectrum, spec.faults)
                result = shifted_by_l2(compute_spectrum(network, F.cross_entropy, splits.train_inputs,
                                                        splits.train_targets, settings, progress),
                                       l2_coefficient(config.optimizer))
                metrics.update(_log_result(logger, result, protocol, protocol.id in home, settings, config, epoch,
                                           scratch, progress.describe()))
                progress.clear()
    return metrics


def _missing(artifacts: RunArtifacts, protocols: tuple[SpectrumProtocol, ...],
             epochs: tuple[int, ...]) -> list[tuple[int, SpectrumProtocol]]:
    """(epoch, protocol) pairs whose result the run does not hold yet: one listing per protocol."""
    done = {p.id: spectrum_epochs_done(artifacts.names(spectrum_dir(p.id))) for p in protocols}
    return [(epoch, p) for epoch in epochs for p in protocols if epoch not in done[p.id]]


def _stored_config(artifacts: RunArtifacts, scratch: Path) -> Optional[TrialConfig]:
    """The config the run was created with (its spectrum settings decide the plain metric names)."""
    try:
        return trial_config_from(json.loads(artifacts.download(TRIAL_CONFIG, scratch / "stored").read_text()))
    except Exception:  # noqa: BLE001 - a run made outside a sweep has none; the job's own config stands in
        return None


def _network(protocol: SpectrumProtocol, state: TrainingState, model: nn.Module, train_inputs: torch.Tensor,
             config: TrialConfig) -> Optional[nn.Module]:
    """The checkpoint's iterate, or its iterate average (with the BatchNorm statistics recomputed for it); None
    when the average is asked for together with the iterate (weights=both) but averaging had not begun yet."""
    if protocol.weights != AVERAGE:
        model.load_state_dict(state.model)
        return model
    if state.averaged is not None:
        model.load_state_dict(state.averaged)
        return model
    averaging = state.recipe.get("averaging") or {}
    if averaging.get("mean") is None:
        if config.spectrum.weights == AVERAGE:
            raise ValueError(f"spectrum.weights=average: the checkpoint of epoch {state.epoch} holds no averaged "
                             "weights yet (averaging starts after optimizer.averaging.start_epoch)")
        return None
    # A checkpoint written before checkpoints carried the averaged model: rebuild it as training evaluated it.
    model.load_state_dict(state.model)
    with torch.no_grad():
        for param, mean in zip(model.parameters(), averaging["mean"], strict=True):
            param.copy_(mean)
    recompute_batchnorm(model, train_inputs, config.trainer.batch_size)
    return model


def _log_result(logger: RunLogger, result: SpectrumResult, protocol: SpectrumProtocol, home: bool,
                settings: SpectrumSettings, config: TrialConfig, epoch: int, scratch: Path,
                resumed_from: Optional[dict[str, int]]) -> dict[str, float]:
    values = (result.lambda_max, result.lambda_min, result.trace_estimate,
              # The fewest steps any run took: below spectrum.steps it flags a run that stopped at invariance.
              float(min(result.steps_taken)))
    metrics = {protocol.metric_name(name, home): value for name, value in zip(METRICS, values, strict=True)}
    tags = [RunTag(f"spectrum.{protocol.id}", protocol.description)]
    if result.nodes:
        tags.append(RunTag(SPECTRUM_NODES_TAG, ",".join(result.nodes)))
    logger.log_metrics(epoch, metrics, tags)
    _log_artifacts(logger, result, protocol, settings, config, epoch, scratch, resumed_from)
    return metrics


def shifted_by_l2(result: SpectrumResult, gamma: float) -> SpectrumResult:
    """The spectrum of the regularised objective: its Hessian is H + gamma*I. Lanczos is shift invariant (the
    same seed vectors span the same Krylov spaces), so this is exact, not an approximation."""
    if gamma == 0.0:
        return result
    return dataclasses.replace(result, runs=tuple(dataclasses.replace(run, alphas=run.alphas + gamma)
                                                  for run in result.runs))


def _log_artifacts(logger: RunLogger, result: SpectrumResult, protocol: SpectrumProtocol, settings: SpectrumSettings,
                   config: TrialConfig, epoch: int, scratch: Path, resumed_from: Optional[dict[str, int]]) -> None:
    """``spectrum/<protocol>/epoch_<n>.png``, then the ``.json`` record: the record is what marks a result done.
    ``resumed_from`` says where a killed earlier attempt's progress let this one start."""
    record = {**result.to_dict(), "epoch": epoch, "protocol": protocol.to_dict(), "settings": vars(settings),
              "l2_shift": l2_coefficient(config.optimizer), "resumed_from": resumed_from}
    out = scratch / protocol.id
    out.mkdir(exist_ok=True)
    weights = " (averaged weights)" if protocol.weights == AVERAGE else ""
    png = plot_density(result, out / f"epoch_{epoch}.png", title=f"{config.model.name} / "
                       f"{config.optimizer.name}{weights}, epoch {epoch}, protocol {protocol.id}")
    logger.log_artifact(png, spectrum_dir(protocol.id))
    json_path = out / spectrum_record_name(epoch)
    json_path.write_text(json.dumps(record))
    logger.log_artifact(json_path, spectrum_dir(protocol.id))
