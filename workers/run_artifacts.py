"""A run's artifact store, whatever the tracking server hands out: a file path, ``mlflow-artifacts:`` or ``s3:``.

MLflow's client resolves most artifact calls for us, but has no call that deletes an artifact (checkpoint pruning
needs one). A repository built from the run's artifact URI alone fails for ``mlflow-artifacts:`` URIs, which a stock
``mlflow server`` gives every run: they name a path on the tracking server, so the repository must be built with the
tracking URI. One repository per run serves every operation, uploads and deletes alike, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, TypeVar

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from workers.retry import retrying

T = TypeVar("T")


class RunArtifacts:
    """Each operation is retried through a tracking-server outage of up to ``outage_timeout`` seconds."""

    def __init__(self, client: MlflowClient, tracking_uri: str, run_id: str, outage_timeout: float = 300.0,
                 artifact_uri: Optional[str] = None) -> None:
        """``artifact_uri``: the run's, when the caller knows it (the coordinator does, from creating or finding the
        run); else it is read from the run."""
        self.run_id = run_id
        self.outage_timeout = outage_timeout
        if artifact_uri is None:
            artifact_uri = client.get_run(run_id).info.artifact_uri
        self.repository: ArtifactRepository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)

    def _call(self, call: Callable[[], T], what: str) -> T:
        return retrying(call, self.outage_timeout, f"{what} (run {self.run_id})")

    def upload(self, local_path: Path, artifact_dir: str) -> None:
        self._call(lambda: self.repository.log_artifact(str(local_path), artifact_dir), f"uploading {local_path.name}")

    def names(self, artifact_dir: str) -> list[str]:
        """File names directly under ``artifact_dir`` (empty when it does not exist)."""
        infos = self._call(lambda: self.repository.list_artifacts(artifact_dir), f"listing {artifact_dir}")
        return [Path(info.path).name for info in infos if not info.is_dir]

    def download(self, artifact_path: str, destination: Path) -> Path:
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self._call(lambda: self.repository.download_artifacts(artifact_path, str(destination)),
                               f"downloading {artifact_path}"))

    def delete(self, artifact_path: str) -> None:
        self._call(lambda: self.repository.delete_artifacts(artifact_path), f"deleting {artifact_path}")
