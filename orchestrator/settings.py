"""Process settings that keep Ray and MLflow on 127.0.0.1 and quiet (see shared/environment.md)."""

from __future__ import annotations

import os
from pathlib import Path

# The Hydra config tree ships inside the package (package data), so a wheel install finds it as a checkout does.
CONF_DIR = Path(__file__).resolve().parent / "conf"

LOCAL_ONLY_ENV = {
    # Without it Ray binds every interface on the machine's non-loopback address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # The summary table says where the runs are; MLflow would otherwise print a link per ended run.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # MLflow draws a progress bar on stderr for every artifact it downloads from a server (sweep.json on a resume,
    # checkpoints in a worker): noise around our one-line errors and in the workers' logs.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow's server otherwise starts job-execution processes we never use (about 2 GB).
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def apply_local_only_env() -> None:
    for key, value in LOCAL_ONLY_ENV.items():
        os.environ.setdefault(key, value)
