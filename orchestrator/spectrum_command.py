"""`sweep spectrum RUN_ID`: the spectrum of a stored checkpoint of an earlier trial, as a Ray task."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

import ray
from mlflow.exceptions import MlflowException
from rich.console import Console

from orchestrator.commands import writable_store
from orchestrator.errors import UserError
from orchestrator.ray_cluster import check_reachable as check_ray_reachable, connect, resolve_address
from orchestrator.ray_launcher import describe_failure, spectrum_task
from orchestrator.tracking import SweepTracker, check_reachable, resolve_target
from workers.artifacts import CHECKPOINT_DIR, TRIAL_CONFIG, checkpoint_epochs
from workers.spec import SpectrumJobSpec


def launch_spectrum(run_id: str, epoch: Optional[int], config: dict[str, Any], console: Console) -> int:
    target = resolve_target(config["tracking"])
    check_reachable(target)
    address = resolve_address(config["cluster"])
    if address:
        check_ray_reachable(address)
    reader = SweepTracker(target.reader, target.experiment)
    trial_config, epoch = _stored_trial(reader, run_id, epoch)
    trial_config["spectrum"] = {**config["spectrum"], "enabled": True}
    with writable_store(target) as endpoint:
        connect(config["cluster"])
        spec = SpectrumJobSpec(run_id, endpoint, trial_config, (epoch,), finishes_trial=False)
        console.print(f"spectrum of run [bold]{run_id}[/] at epoch {epoch}: {config['spectrum']['steps']} Lanczos steps, "
                      f"{config['spectrum']['num_vectors']} vectors, {config['spectrum']['num_workers']} worker(s)")
        try:
            outcome = ray.get(spectrum_task(config["spectrum"]).remote(spec))
        except ray.exceptions.RayError as error:
            raise UserError(f"spectrum job failed: {describe_failure(error)}") from None
    if outcome.state != "FINISHED":
        console.print(f"[red]spectrum job failed:[/] {outcome.error}")
        return 1
    metrics = outcome.final_metrics
    console.print(f"lambda_max {metrics['lambda_max']:.6g}  lambda_min {metrics['lambda_min']:.6g}  "
                  f"trace {metrics['trace_estimate']:.6g}  (artifacts: spectrum/epoch_{epoch}.json, .png)")
    return 0


def _stored_trial(tracker: SweepTracker, run_id: str, epoch: Optional[int]) -> tuple[dict[str, Any], int]:
    """The run's trial config and the checkpoint epoch to use, or a one-line error saying what is missing."""
    try:
        tracker.client.get_run(run_id)
    except MlflowException:
        raise UserError(f"run {run_id}: no such run in {tracker.endpoint.shown}") from None
    epochs = checkpoint_epochs(Path(f.path).name for f in tracker.client.list_artifacts(run_id, CHECKPOINT_DIR))
    if not epochs:
        raise UserError(f"run {run_id}: has no checkpoint to compute a spectrum of")
    if epoch is None:
        epoch = epochs[-1]
    elif epoch not in epochs:
        raise UserError(f"--epoch {epoch}: run {run_id} has checkpoints at epochs {', '.join(map(str, epochs))}")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = tracker.client.download_artifacts(run_id, TRIAL_CONFIG, scratch)
        except (MlflowException, OSError):
            raise UserError(f"run {run_id}: not a trial run of a sweep (no {TRIAL_CONFIG})") from None
        return json.loads(Path(path).read_text()), epoch
