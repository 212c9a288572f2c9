"""MLflow tracking servers started the way their own docs start them, for tests: a stock ``mlflow server``
(proxied artifacts, its default), on SQLite or a real PostgreSQL, optionally as the basic-auth app.

Each server runs in its own process group and is stopped by that group's id, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from orchestrator.mlflow_server import free_port, is_healthy

STARTUP_S = 120.0
ADMIN_USER = "lab-admin"
# Unique to each test session, so that a search of everything a sweep leaves finds it only where it leaked.
AUTH_PASSWORD = f"pw-{uuid.uuid4().hex}"
# Set inside the private network namespace that test_multinode.py runs tests/multinode/ in.
NETNS_ENV = "CURVATURE_SWEEPS_IN_NETNS"


@dataclass
class StockServer:
    """``mlflow server --backend-store-uri URI --host 127.0.0.1 --port PORT`` and nothing else on its command line."""

    directory: Path
    backend_uri: str
    app_name: Optional[str] = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: Optional[subprocess.Popen[bytes]] = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                   "--host", "127.0.0.1", "--port", str(self.port)]
        return [*command, "--app-name", self.app_name] if self.app_name else command

    def start(self) -> "StockServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # cwd: the server's default artifact destination is ./mlartifacts.
            self.process = subprocess.Popen(self.command(), cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env}, start_new_session=True)
        deadline = time.monotonic() + STARTUP_S
        while not is_healthy(self.uri, timeout=1.0):
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server not healthy within {STARTUP_S} s: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        """SIGTERM to the server's process group (gunicorn/uvicorn workers included), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def sqlite_server(directory: Path) -> StockServer:
    return StockServer(directory, f"sqlite:///{directory / 'mlflow.db'}").start()


def postgres_uri(directory: Path) -> tuple[str, object]:
    """A private PostgreSQL 16 (the pgserver package) in ``directory``; the server handle keeps it alive."""
    import pgserver

    server = pgserver.get_server(str(directory), cleanup_mode="stop")
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1), server


def basic_auth_server(directory: Path, admin_password: str) -> StockServer:
    """MLflow's basic-auth app, configured as its docs say: an ini file named by MLFLOW_AUTH_CONFIG_PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{directory / 'auth.db'}\n"
        f"admin_username = {ADMIN_USER}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex()}
    return StockServer(directory, f"sqlite:///{directory / 'mlflow.db'}", app_name="basic-auth", env=env).start()
