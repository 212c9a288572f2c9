"""An auth-enabled MLflow server (the basic-auth app): credentials given the MLflow way or in the URI work; missing
or wrong ones are one line before launch; and no password is ever recorded anywhere a sweep leaves things."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from tracking_servers import ADMIN_USER, AUTH_PASSWORD, StockServer
from workers.tracking_endpoint import PASSWORD_ENV, USERNAME_ENV, TrackingEndpoint, redact_uri


def _with_credentials(uri: str, user: str, password: str) -> str:
    return uri.replace("http://", f"http://{user}:{password}@")


def _admin(server: StockServer) -> MlflowClient:
    return TrackingEndpoint(server.uri, ADMIN_USER, AUTH_PASSWORD).client()


def test_redacted_uris_keep_everything_but_the_password() -> None:
    assert redact_uri("http://ann:s3cret@host:5000/x") == "http://ann:***@host:5000/x"
    assert redact_uri("tracking.uri=postgresql+psycopg2://u:p%40ss@db/mlflow") == "tracking.uri=postgresql+psycopg2://u:***@db/mlflow"
    assert redact_uri("http://host:5000") == "http://host:5000"
    # As Hydra's sweeper writes a grid point's overrides.
    assert redact_uri(r"tracking.uri=http\://ann\:s3cret@host\:5000") == r"tracking.uri=http\://ann:***@host\:5000"
    endpoint = TrackingEndpoint.from_uri("https://ann:s3cret@host:5000", environ={})
    assert (endpoint.uri, endpoint.username, endpoint.password) == ("https://host:5000", "ann", "s3cret")
    assert "s3cret" not in repr(endpoint)


@pytest.mark.parametrize("how", ["none", "wrong-env", "wrong-uri"])
def test_missing_or_wrong_credentials_are_one_line_before_launch(how: str, auth_server: StockServer, experiment: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    uri = auth_server.uri
    if how == "wrong-env":
        monkeypatch.setenv(USERNAME_ENV, ADMIN_USER)
        monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    elif how == "wrong-uri":
        uri = _with_credentials(uri, ADMIN_USER, "not-the-password")
    code = main(["run", "dataset=digits", f"tracking.uri={uri}", f"tracking.experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    if how == "none":
        assert err == (f"error: tracking.uri={auth_server.uri}: the server needs credentials; set {USERNAME_ENV} and "
                       f"{PASSWORD_ENV}, or give them in the URI (http://USER:PASSWORD@host:port)")
    else:
        assert f"the server refused the credentials of user '{ADMIN_USER}' (HTTP 401)" in err
        assert "not-the-password" not in err
    assert _admin(auth_server).get_experiment_by_name(experiment) is None, "nothing was recorded"


def _password_sightings(root: Path, password: str) -> list[str]:
    needle = password.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _watch_command_lines(password: str, stop: threading.Event, found: list[str]) -> None:
    """Every process's command line, sampled while the sweep runs (child processes included)."""
    needle = password.encode()
    while not stop.wait(0.2):
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if needle in cmdline.read_bytes():
                    found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass


@pytest.mark.slow
def test_credentials_in_the_uri_work_and_are_recorded_nowhere(tmp_path: Path, auth_server: StockServer, ray_address: str,
                                                              experiment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    secret_uri = _with_credentials(auth_server.uri, ADMIN_USER, AUTH_PASSWORD)
    faults = {"optimizer.lr=0.02": {"raise_at_epoch": 1}}
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_command_lines, args=(AUTH_PASSWORD, stop, seen), daemon=True)
    watcher.start()
    env = {**os.environ, "SWEEP_FAULTS": json.dumps(faults)}
    env.pop(USERNAME_ENV, None), env.pop(PASSWORD_ENV, None)
    try:
        # The arguments go in on stdin: this command line must not carry the password either (the watcher reads it).
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main(sys.stdin.read().split()))"],
            input=" ".join(["run", "-m", "optimizer.lr=0.01,0.02", "dataset=digits", "trainer.epochs=3",
                            "checkpoint.every=1", "checkpoint.keep=1", f"tracking.uri={secret_uri}",
                            f"tracking.experiment={experiment}", f"cluster.address={ray_address}", "cluster.num_cpus=0.5"]),
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
        )
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 2 trial(s) did not finish" in result.stdout

    client = _admin(auth_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    assert len(runs) == 3
    assert {r.info.status for r in runs if r.data.tags.get("kind") == "trial"} == {"FINISHED", "FAILED"}
    downloaded = tmp_path.parent / f"{tmp_path.name}-artifacts"
    for run in runs:
        client.download_artifacts(run.info.run_id, "", str(downloaded / run.info.run_id))
    assert any(r.data.params.get("tracking.uri") == redact_uri(secret_uri) for r in runs), "recorded, masked"

    assert AUTH_PASSWORD not in result.stdout + result.stderr
    leaks = [k for r in runs for k, v in {**r.data.params, **r.data.tags}.items() if AUTH_PASSWORD in v]
    assert not leaks, f"params and tags: {leaks}"
    assert not seen, f"process command lines: {seen[:1]}"
    assert not _password_sightings(tmp_path, AUTH_PASSWORD), "the sweep's working directory (Hydra outputs, logs)"
    assert not _password_sightings(downloaded, AUTH_PASSWORD), "artifacts: sweep.json, trial configs, tracebacks"
    assert not _password_sightings(auth_server.directory / "mlartifacts", AUTH_PASSWORD)
    assert AUTH_PASSWORD.encode() not in (auth_server.directory / "mlflow.db").read_bytes()
    ray_logs = Path("/tmp/ray/session_latest/logs")
    assert not _password_sightings(ray_logs, AUTH_PASSWORD), "Ray's logs"
