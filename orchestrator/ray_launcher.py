"""The Ray tasks of a sweep: a trial's training, and its spectrum job.

A trial with ``spectrum.enabled`` is two tasks: training, then (once training has released its resources) the
spectrum job, with the spectrum's own resources; the trial's run ends when the second does. The coordinator
(orchestrator/coordinator.py) submits and chains them.
"""

from __future__ import annotations

import importlib
from typing import Any

import ray

from workers.spec import RetryableTrialError, SpectrumJobSpec, TrialOutcome, TrialSpec
from workers.trial_config import ClusterConfig, DatasetConfig, SpectrumConfig


def _execute_trial(spec: TrialSpec) -> TrialOutcome:
    # Imported here, inside the worker: the control plane never imports torch.
    from workers.training.trial import run_trial

    return run_trial(spec)


def _execute_spectrum(spec: SpectrumJobSpec) -> TrialOutcome:
    from workers.spectrum_job import run_spectrum_job

    return run_spectrum_job(spec)


def _prepare_worker(dataset: DatasetConfig) -> None:
    """What a trial pays once per worker process, paid ahead: the trainer's imports (torch, mlflow), torch's
    compiler stack, which ``torch.optim`` imports at the first optimizer (2 s here), and the sweep's dataset, which
    the worker keeps for its trials (1 s for digits)."""
    from workers.training.data import load_dataset

    for module in ("workers.training.trial", "torch._dynamo"):
        importlib.import_module(module)
    load_dataset(dataset)


def warm_up(cluster: ClusterConfig, dataset: DatasetConfig, trials: int) -> None:
    """Have idle workers prepare for the trials now, while the tracking store starts; Ray hands the warm workers the
    trials. Fire and forget: a warm-up never delays or fails a trial."""
    slots = int(ray.available_resources().get("CPU", 0) // max(cluster.num_cpus, 1e-3))
    task = ray.remote(_prepare_worker).options(num_cpus=cluster.num_cpus, name="warm-up")
    for _ in range(min(trials, slots)):
        task.remote(dataset)


def spectrum_task(spectrum: SpectrumConfig) -> Any:
    """One worker computes in its own process with the worker's resources; a sharded job is a coordinator that
    holds no resources while its placement group of ``num_workers`` workers does the products."""
    single = spectrum.num_workers == 1
    return ray.remote(_execute_spectrum).options(
        num_cpus=spectrum.cpus_per_worker if single else 0, num_gpus=spectrum.gpus_per_worker if single else 0,
        max_retries=1, name="spectrum",
    )


def train_task(cluster: ClusterConfig) -> Any:
    """A trial's training task with the trial's resources; Ray re-runs it when its worker or node dies."""
    return ray.remote(_execute_trial).options(
        num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus, max_retries=cluster.max_retries,
        retry_exceptions=[RetryableTrialError], name="trial",
    )


def describe_failure(error: ray.exceptions.RayError) -> str:
    """One line on why a task failed for good: the task's own exception, or how its worker died."""
    cause = getattr(error, "cause", None)
    if isinstance(error, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"[:2000]
    return f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}"[:2000]
