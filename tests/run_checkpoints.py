"""Read a run's stored checkpoints as a user would, with MLflow's client (the names carry their digest)."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from workers.artifacts import CHECKPOINT_DIR, checkpoint_files


def stored_checkpoints(client: MlflowClient, run_id: str) -> dict[int, str]:
    """Epoch -> file name of the checkpoints a run holds."""
    return checkpoint_files(Path(f.path).name for f in client.list_artifacts(run_id, CHECKPOINT_DIR))


def download_checkpoint(client: MlflowClient, run_id: str, epoch: int, destination: Path) -> Path:
    name = stored_checkpoints(client, run_id)[epoch]
    return Path(client.download_artifacts(run_id, f"{CHECKPOINT_DIR}/{name}", str(destination)))
