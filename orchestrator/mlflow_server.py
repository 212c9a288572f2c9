"""A local MLflow tracking server process on 127.0.0.1 in front of the default sqlite store.

Every trial of a sweep logs at once; sqlite allows one writer, and MLflow's sqlite store raises "database is
locked" under concurrent writer processes. One server process serialises the writes, so no metric is lost.
"""

from __future__ import annotations

import base64
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from orchestrator.errors import UserError
from orchestrator.settings import LOCAL_ONLY_ENV
from workers.tracking_endpoint import PASSWORD_ENV, USERNAME_ENV, TrackingEndpoint

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


def check_credentials(endpoint: TrackingEndpoint, timeout: float = 30.0) -> None:
    """One authenticated read, so that missing or wrong credentials are one line before launch, not a traceback
    in every trial."""
    request = urllib.request.Request(f"{endpoint.uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    if endpoint.username is not None:
        token = base64.b64encode(f"{endpoint.username}:{endpoint.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code == 401 and endpoint.username is None:
            raise UserError(f"tracking.uri={endpoint.shown}: the server needs credentials; set {USERNAME_ENV} and "
                            f"{PASSWORD_ENV}, or give them in the URI (http://USER:PASSWORD@host:port)") from None
        if error.code == 401:
            raise UserError(f"tracking.uri={endpoint.shown}: the server refused the credentials of user "
                            f"{endpoint.username!r} (HTTP 401); check {USERNAME_ENV} / {PASSWORD_ENV} or the URI") from None
        if error.code == 403:
            raise UserError(f"tracking.uri={endpoint.shown}: user {endpoint.username!r} may not read experiments "
                            "there (HTTP 403); ask the server's admin for permissions") from None
        raise UserError(f"tracking.uri={endpoint.shown}: the server answered HTTP {error.code} to a read") from None
    except OSError as error:
        raise UserError(f"tracking.uri={endpoint.shown}: reading from the server failed ({error})") from None


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


def sqlite_store(uri: str) -> tuple[Path, str]:
    """A user's ``sqlite:///path/db`` store: the directory for the server's log, and the artifact root for new
    experiments (``mlruns`` beside the database, as MLflow's own default puts it beside the working directory)."""
    path = Path(uri[len("sqlite:///"):]).resolve()
    return path.parent, (path.parent / "mlruns").as_uri()


class LocalMlflowServer:
    """``with LocalMlflowServer(dir) as uri:`` serves the store in ``dir`` at ``uri`` until the block ends.

    ``backend_uri`` serves a user's own ``sqlite:///`` store instead (many trials write at once; sqlite alone would
    answer "database is locked").
    """

    def __init__(self, directory: Path, port: Optional[int] = None, *, tie_to_parent: bool = True,
                 backend_uri: Optional[str] = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.tie_to_parent = tie_to_parent
        self.backend_uri = backend_uri
        self.process: Optional[subprocess.Popen[bytes]] = None

    @classmethod
    def for_sqlite(cls, uri: str) -> "LocalMlflowServer":
        return cls(sqlite_store(uri)[0], backend_uri=uri)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        backend, artifacts = (self.backend_uri, sqlite_store(self.backend_uri)[1]) if self.backend_uri \
            else local_store(self.directory)
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
        try:
            return self.start()
        except BaseException:
            # Ctrl-C while the server is still starting: it is not left behind.
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
