"""Which spectra a set of finished trial runs still lacks, read from their runs: nothing is trained again.

A result is keyed by (trial, checkpoint epoch, protocol); the runs' artifacts say which keys exist, their
checkpoints which epochs can be computed at all.
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from workers.artifacts import (CHECKPOINT_DIR, TRIAL_CONFIG, checkpoint_epochs, spectrum_dir, spectrum_epochs_done)
from workers.spec import spectrum_epochs
from workers.config_structure import trial_config_from
from workers.spectrum_protocol import protocols_of
from workers.trial_config import TrialConfig

# Concurrent reads of the store while planning: each trial costs 2 + (protocols) requests.
READERS = 8


@dataclass(frozen=True)
class SpectrumJob:
    """One spectrum job to run: a trial run, the checkpoint epoch, the config it computes under."""

    trial_id: str
    run_id: str
    label: str
    epoch: int
    # The trial's stored config with the requested spectrum settings and this command's where-to-run settings.
    config: TrialConfig
    # Protocol ids of the results this job adds (the others of its settings exist already).
    protocols: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    trial_id: str
    run_id: str
    label: str
    reason: str


def stored_trial_config(client: MlflowClient, run_id: str) -> Optional[TrialConfig]:
    """The resolved config the run was created with; None for a run that is not a sweep's trial. A stored config
    this version cannot read raises ValueError, saying why."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(run_id, TRIAL_CONFIG, scratch)
        except (MlflowException, OSError):
            return None
        return trial_config_from(json.loads(Path(path).read_text()))


def stored_checkpoint_epochs(client: MlflowClient, run_id: str) -> list[int]:
    return checkpoint_epochs(Path(f.path).name for f in client.list_artifacts(run_id, CHECKPOINT_DIR))


def job_config(stored: TrialConfig, config: TrialConfig) -> TrialConfig:
    """What the job computes under: the trial as it was trained, the spectrum settings asked for now, and where to
    run as this command says (addresses, heartbeats and retries of today's store and cluster)."""
    return replace(stored, spectrum=replace(config.spectrum, enabled=True), cluster=config.cluster,
                   tracking=config.tracking)


def missing_protocols(client: MlflowClient, run_id: str, job: TrialConfig, epoch: int) -> tuple[str, ...]:
    """Ids of the protocols ``job``'s spectrum settings ask for whose result at ``epoch`` the run does not hold."""
    return tuple(p.id for p in protocols_of(job)
                 if epoch not in spectrum_epochs_done(Path(f.path).name
                                                      for f in client.list_artifacts(run_id, spectrum_dir(p.id))))


@dataclass(frozen=True)
class SpectrumPlan:
    jobs: list[SpectrumJob]
    skipped: list[Skipped]
    # Each readable run's stored trial config, by trial id.
    configs: dict[str, TrialConfig]


def missing_spectrum_epochs(client: MlflowClient, run_id: str, config: TrialConfig) -> tuple[int, ...]:
    """The epochs of ``spectrum_epochs(config)`` at which a finished trial's run has a checkpoint but lacks a result
    of ``config``'s spectrum settings: what `sweep run ... spectrum=slq` over a finished sweep still computes (a
    spectrum job of those epochs with finishes_trial=False), without training again."""
    if not config.spectrum.enabled:
        return ()
    available = set(stored_checkpoint_epochs(client, run_id))
    wanted = [epoch for epoch in spectrum_epochs(config) if epoch in available]
    return tuple(epoch for epoch in wanted if missing_protocols(client, run_id, config, epoch))


def plan_jobs(client: MlflowClient, runs: Mapping[str, Run], labels: Mapping[str, str], epoch: Optional[int],
              config: TrialConfig, *, trained_only: bool) -> SpectrumPlan:
    """A job for each run that lacks a result of ``config``'s spectrum settings at ``epoch`` (default: its newest
    checkpoint, which with ``trained_only`` must be its last epoch: an unfinished trial is skipped, not guessed
    at). Runs are read concurrently."""

    def plan_one(trial_id: str) -> tuple[Optional[TrialConfig], SpectrumJob | Skipped]:
        run_id = runs[trial_id].info.run_id
        label = labels.get(trial_id, trial_id)
        epochs = stored_checkpoint_epochs(client, run_id)
        try:
            stored = stored_trial_config(client, run_id) if epochs else None
        except ValueError as error:
            return None, Skipped(trial_id, run_id, label, f"its {TRIAL_CONFIG} is {error}")
        if stored is None:
            reason = f"not a trial run of a sweep (no {TRIAL_CONFIG})" if epochs else "has no checkpoint"
            return None, Skipped(trial_id, run_id, label, reason)
        chosen = _choose_epoch(epochs, epoch, stored.trainer.epochs, trained_only)
        if isinstance(chosen, str):
            return stored, Skipped(trial_id, run_id, label, chosen)
        job = job_config(stored, config)
        try:
            missing = missing_protocols(client, run_id, job, chosen)
        except ValueError as error:
            return stored, Skipped(trial_id, run_id, label, str(error))
        if not missing:
            return stored, Skipped(trial_id, run_id, label, f"has this spectrum at epoch {chosen} already")
        return stored, SpectrumJob(trial_id, run_id, label, chosen, job, missing)

    order = sorted(runs, key=lambda t: labels.get(t, t))
    with ThreadPoolExecutor(READERS) as pool:
        planned = dict(zip(order, pool.map(plan_one, order)))
    outcomes = [outcome for _, outcome in planned.values()]
    return SpectrumPlan([o for o in outcomes if isinstance(o, SpectrumJob)],
                        [o for o in outcomes if isinstance(o, Skipped)],
                        {tid: stored for tid, (stored, _) in planned.items() if stored is not None})


def _choose_epoch(epochs: Sequence[int], wanted: Optional[int], last: int, trained_only: bool) -> int | str:
    """The checkpoint epoch to compute at, or why there is none."""
    if not epochs:
        return "has no checkpoint"
    if wanted is not None:
        if wanted not in epochs:
            return f"has no checkpoint at epoch {wanted} (it has {', '.join(map(str, epochs))})"
        return wanted
    if trained_only and epochs[-1] != last:
        return f"not trained to the end yet (newest checkpoint: epoch {epochs[-1]} of {last})"
    return epochs[-1]
