"""Session-wide real services: a Ray started with ray.init(num_cpus=2) and an MLflow server on 127.0.0.1."""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from orchestrator.settings import LOCAL_ONLY_ENV

os.environ.update(LOCAL_ONLY_ENV)


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a real local Ray; trials launched by `sweep` subprocesses join it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server process on 127.0.0.1, stopped by its PID at the end of the session."""
    from orchestrator.mlflow_server import LocalMlflowServer

    server = LocalMlflowServer(tmp_path_factory.mktemp("mlflow-server"), tie_to_parent=True)
    uri = server.start()
    yield uri
    server.stop()


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so each test sees only its own runs."""
    return f"test-{uuid.uuid4().hex[:8]}"
