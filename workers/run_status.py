"""A run's status set in one request.

``MlflowClient.update_run`` reads the run first (to send its end time back unchanged) and ``set_terminated`` reads
it too (to print the run's URL): two requests where the server needs one. The store's ``update_run_info`` is the
one request both end in; the server leaves the end time alone when none is sent.
"""

from __future__ import annotations

import time
from typing import Optional

from mlflow.entities import RunStatus as MlflowRunStatus
from mlflow.tracking import MlflowClient

from workers.vocabulary import TERMINAL, RunStatus


def set_run_status(client: MlflowClient, run_id: str, status: RunStatus, end_time: Optional[int] = None) -> None:
    """``status`` in one request; a terminal status stamps the end time (now, unless given)."""
    if status in TERMINAL and end_time is None:
        end_time = int(time.time() * 1000)
    client._tracking_client.store.update_run_info(run_id, MlflowRunStatus.from_string(status), end_time, None)
