"""Tracking calls that outlive an outage of the tracking server.

MLflow's client retries an HTTP request on its own for a while (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` with backoff,
about 20 s by default). A server that restarts slower than that, or a longer network blip, would otherwise end a
trial or a whole sweep with a traceback. Both planes wrap their tracking calls in :func:`retrying`, bounded by
``tracking.outage_timeout``. A retried call must be safe to repeat: metrics are re-sent with the timestamp of their
first try, and MLflow stores an identical (key, step, timestamp, value) once.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Callable, TypeVar

from mlflow.exceptions import MlflowException, RestException

T = TypeVar("T")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 15.0


class TrackingOutage(RuntimeError):
    """The tracking server stayed unreachable for longer than ``tracking.outage_timeout``."""


def is_transient(error: BaseException) -> bool:
    """Connection failures and 5xx answers pass; a 4xx (a bad request, a missing run) is the caller's bug."""
    if isinstance(error, RestException):
        return error.get_http_status_code() >= 500
    if isinstance(error, MlflowException):
        # MLflow wraps exhausted connection retries as a plain MlflowException ("API request to ... failed").
        return "API request to" in error.message
    return isinstance(error, (ConnectionError, TimeoutError, OSError))


def retrying(call: Callable[[], T], timeout_s: float, what: str = "tracking call") -> T:
    deadline = time.monotonic() + timeout_s
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - filtered by is_transient
            if not is_transient(error):
                raise
            if time.monotonic() + backoff > deadline:
                raise TrackingOutage(f"{what}: the tracking server did not answer for {timeout_s:.0f} s "
                                     f"(tracking.outage_timeout): {type(error).__name__}") from error
            warnings.warn(f"{what} failed ({type(error).__name__}); retrying in {backoff:.0f} s", stacklevel=2)
            time.sleep(backoff * (0.75 + random.random() / 2))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
