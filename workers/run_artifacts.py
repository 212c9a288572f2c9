"""A run's artifact store, whatever the tracking server hands out: a file path, ``mlflow-artifacts:`` or ``s3:``.

MLflow's client resolves most artifact calls for us, but has no call that deletes an artifact (checkpoint pruning
needs one). A repository built from the run's artifact URI alone fails for ``mlflow-artifacts:`` URIs, which a stock
``mlflow server`` gives every run: they name a path on the tracking server, so the repository must be built with the
tracking URI. One repository per run serves every operation, uploads and deletes alike, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient


class RunArtifacts:
    def __init__(self, client: MlflowClient, tracking_uri: str, run_id: str) -> None:
        self.run_id = run_id
        artifact_uri = client.get_run(run_id).info.artifact_uri
        self.repository: ArtifactRepository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)

    def upload(self, local_path: Path, artifact_dir: str) -> None:
        self.repository.log_artifact(str(local_path), artifact_dir)

    def names(self, artifact_dir: str) -> list[str]:
        """File names directly under ``artifact_dir`` (empty when it does not exist)."""
        return [Path(info.path).name for info in self.repository.list_artifacts(artifact_dir) if not info.is_dir]

    def download(self, artifact_path: str, destination: Path) -> Path:
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.repository.download_artifacts(artifact_path, str(destination)))

    def delete(self, artifact_path: str) -> None:
        self.repository.delete_artifacts(artifact_path)
