"""Session-wide real services: a Ray started with ray.init(num_cpus=2) and stock MLflow servers on 127.0.0.1
(started as their docs do: proxied artifacts, SQLite or PostgreSQL, optionally basic auth)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from orchestrator.settings import LOCAL_ONLY_ENV
from tracking_servers import AUTH_PASSWORD, NETNS_ENV, StockServer, basic_auth_server, postgres_uri, sqlite_server
from workers.tracking_endpoint import PASSWORD_ENV, USERNAME_ENV

os.environ.update(LOCAL_ONLY_ENV)

# tests/multinode/ runs only inside the network namespace test_multinode.py makes (several Ray nodes on 127.0.0.1).
collect_ignore = [] if os.environ.get(NETNS_ENV) else ["multinode"]
if os.environ.get(NETNS_ENV):
    # Inside the namespace every bind is private, and a second Ray node may join (environment.md).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a real local Ray; trials launched by `sweep` subprocesses join it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def stock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """A stock `mlflow server` on SQLite, as a lab runs it: it serves artifacts itself (mlflow-artifacts:/ URIs)."""
    server = sqlite_server(tmp_path_factory.mktemp("mlflow-sqlite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_uri(stock_server: StockServer) -> str:
    return stock_server.uri


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """The same stock server on a real PostgreSQL 16 (pgserver: a private server in a directory, no root)."""
    # pgserver runs PostgreSQL as its own user when started by root: its directory must be reachable by that user,
    # which pytest's private (0700) temp tree is not.
    directory = Path(tempfile.mkdtemp(prefix="curvature-sweeps-pg-"))
    directory.chmod(0o755)
    backend, database = postgres_uri(directory / "data")
    server = StockServer(tmp_path_factory.mktemp("mlflow-postgres"), backend).start()
    yield server
    server.stop()
    database.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    """MLflow's basic-auth app with an admin whose password is unique to this session (searchable in outputs)."""
    server = basic_auth_server(tmp_path_factory.mktemp("mlflow-auth"), AUTH_PASSWORD)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _restore_mlflow_credentials() -> Iterator[None]:
    """Credentials a test installs into this process's environment never leak into the next test."""
    saved = {key: os.environ.get(key) for key in (USERNAME_ENV, PASSWORD_ENV)}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so each test sees only its own runs."""
    return f"test-{uuid.uuid4().hex[:8]}"
