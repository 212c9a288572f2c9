"""What the control plane hands a worker: one trial to run and the MLflow run to log it into.

Plain values only (no torch), so the orchestrator can build it without importing the compute plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from workers.tracking_endpoint import TrackingEndpoint
from workers.trial_config import TrialConfig
from workers.vocabulary import RunStatus


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    sweep_id: str
    # The trial's child run, created by the orchestrator before launch; the worker logs into it.
    run_id: str
    tracking: TrackingEndpoint
    # The trial's resolved config, built once by the control plane.
    config: TrialConfig
    # Test-only fault injection; not part of the trial's identity.
    faults: dict[str, Any] = field(default_factory=dict)
    # Who owns the trial: the sweep's coordinator (an actor handle), told when an attempt starts (trial_started) and
    # asked whether the trial is still its own (owns, and report once an epoch; see workers/ownership.py).
    owner: Any = None
    # The run's artifact URI, known to whoever created or found the run (None: the worker reads it from the run).
    artifact_uri: Optional[str] = None
    # The run was created for this task and holds nothing yet (no attempt, metrics, checkpoints or error): its first
    # attempt reads nothing back. A retry of the task (Ray's attempt > 0) reads the run as a resume does.
    new_run: bool = False


@dataclass(frozen=True)
class SpectrumJobSpec:
    """Spectra of a trial's stored checkpoints, logged into the trial's run."""

    run_id: str
    tracking: TrackingEndpoint
    # The trial's resolved config; its ``spectrum`` group holds the settings.
    config: TrialConfig
    epochs: tuple[int, ...]
    # True when the job completes a sweep trial (the run ends FINISHED); False for `sweep spectrum`.
    finishes_trial: bool
    # Test-only fault injection (workers.spectrum_progress); not part of any result's key.
    faults: dict[str, Any] = field(default_factory=dict)


def spectrum_epochs(config: TrialConfig) -> tuple[int, ...]:
    """The epochs a sweep trial computes spectra at (the listed ones and the last); none when disabled."""
    if not config.spectrum.enabled:
        return ()
    return tuple(sorted({*config.spectrum.at_epochs, config.trainer.epochs}))


class RetryableTrialError(RuntimeError):
    """A trial error whose class the sweep lists in ``cluster.retry_exceptions``: Ray retries the task."""


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: str
    run_id: str
    state: RunStatus
    final_metrics: dict[str, float]
    error: str | None = None
