"""`sweep ui` serves the configured local store on 127.0.0.1 until it is stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.mlflow_server import free_port, is_healthy, local_store


def test_ui_serves_the_local_store(tmp_path: Path) -> None:
    store = tmp_path / ".sweeps"
    store.mkdir()
    MlflowClient(local_store(store)[0]).create_experiment("curvature-sweeps")
    port = free_port()
    # Started with SIGINT ignored, as `nohup sweep ui &` from a script starts it: Ctrl-C must still stop it.
    ui = subprocess.Popen([str(Path(sys.executable).with_name("sweep")), "ui", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not is_healthy(uri) and time.monotonic() < deadline:
            assert ui.poll() is None, ui.stdout.read().decode() if ui.stdout else ""
            time.sleep(0.5)
        with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=curvature-sweeps") as r:
            assert json.load(r)["experiment"]["name"] == "curvature-sweeps"
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(timeout=30)
    assert not is_healthy(uri), "the UI server stops with the command"
