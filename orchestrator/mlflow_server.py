"""A local MLflow tracking server process on 127.0.0.1 in front of the default sqlite store.

Every trial of a sweep logs at once; sqlite allows one writer, and MLflow's sqlite store raises "database is
locked" under concurrent writer processes. One server process serialises the writes, so no metric is lost.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from orchestrator.errors import UserError
from orchestrator.settings import LOCAL_ONLY_ENV

STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def local_store(directory: Path) -> tuple[str, str]:
    """The backend URI and artifact root of the local store kept in ``directory``."""
    directory = directory.resolve()
    return f"sqlite:///{directory / 'mlflow.db'}", (directory / "artifacts").as_uri()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, even by kill -9."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalMlflowServer:
    """``with LocalMlflowServer(dir) as uri:`` serves the store in ``dir`` at ``uri`` until the block ends."""

    def __init__(self, directory: Path, port: Optional[int] = None, *, tie_to_parent: bool = True) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.tie_to_parent = tie_to_parent
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        backend, artifacts = local_store(self.directory)
        return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--backend-store-uri", backend, "--default-artifact-root", artifacts,
                "--no-serve-artifacts"]

    def start(self) -> str:
        self.spawn()
        return self.wait_until_healthy()

    def spawn(self) -> None:
        """Start the process without waiting for it: the caller may do other start-up work meanwhile."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "mlflow-server.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **LOCAL_ONLY_ENV},
                preexec_fn=_die_with_parent if self.tie_to_parent else None,
            )

    def wait_until_healthy(self) -> str:
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"the local MLflow server exited with code {self.process.returncode}; "
                                f"see {self.directory / 'mlflow-server.log'}")
            if is_healthy(self.uri, timeout=1.0):
                return self.uri
            time.sleep(0.3)
        self.stop()
        raise UserError(f"the local MLflow server did not answer on {self.uri} within {STARTUP_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
