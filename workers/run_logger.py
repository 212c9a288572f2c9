"""The worker's side of tracking: everything a trial writes to its MLflow run goes through here.

Metrics go in one ``log_batch`` per epoch (a single ``log_metric`` costs 12-17 ms against a server, see
environment.md), together with the heartbeat tag the orchestrator uses to tell a live trial from a stale one and
any bookkeeping tag that may wait for it (the checkpoint epoch). A run created for its task is started without
reading it back: one status update and one batch of tags.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence, TypeVar

from mlflow.entities import Metric, RunTag

from workers.placement import where_am_i
from workers.retry import retrying
from workers.run_artifacts import RunArtifacts
from workers.run_status import set_run_status
from workers.tracking_endpoint import TrackingEndpoint, scrub
from workers.trial_config import TrackingConfig
from workers.vocabulary import (ATTEMPT_TAG, CHECKPOINT_EPOCH_TAG, EPOCH_TAG, ERROR_TAG, HEARTBEAT_INTERVAL_TAG,
                                HEARTBEAT_TAG, NODE_ID_TAG, NODE_TAG, PRUNED_TAG, RECOMPUTED_TAG, RESUMED_FROM_TAG,
                                WORKER_PID_TAG, RunStatus)

T = TypeVar("T")


class RunLogger:
    """Every call is retried through a tracking-server outage of up to ``outage_timeout`` seconds."""

    def __init__(self, endpoint: TrackingEndpoint, run_id: str, *, heartbeat_interval: float = 30.0,
                 outage_timeout: float = 300.0, artifact_uri: Optional[str] = None) -> None:
        self.endpoint = endpoint
        self.client = endpoint.client()
        self.run_id = run_id
        self.heartbeat_interval = heartbeat_interval
        self.outage_timeout = outage_timeout
        self.artifact_uri = artifact_uri
        # Tags that ride on the next batch (see record_checkpoint); sent at the latest by flush, finish or fail.
        # A lock, because the checkpoint uploader records from its own thread.
        self._pending: dict[str, RunTag] = {}
        self._pending_lock = threading.Lock()

    @classmethod
    def for_run(cls, endpoint: TrackingEndpoint, run_id: str, tracking: TrackingConfig,
                artifact_uri: Optional[str] = None) -> "RunLogger":
        """A logger with the sweep's ``tracking.heartbeat_interval`` and ``tracking.outage_timeout``."""
        return cls(endpoint, run_id, heartbeat_interval=tracking.heartbeat_interval,
                   outage_timeout=tracking.outage_timeout, artifact_uri=artifact_uri)

    def _call(self, call: Callable[[], T], what: str) -> T:
        return retrying(call, self.outage_timeout, f"{what} of run {self.run_id}")

    def artifacts(self) -> RunArtifacts:
        return self._call(lambda: RunArtifacts(self.client, self.endpoint.uri, self.run_id, self.outage_timeout,
                                               self.artifact_uri), "reading the artifact location")

    def mark_running(self, new_run: bool = False) -> None:
        """Start (or restart, after a retry or resume) the run, counting the attempt and naming the worker's PID,
        node and heartbeat interval. ``new_run``: the run was created for this attempt, so it has no earlier attempt
        and no error to clear, and nothing is read."""
        attempts = 1
        if not new_run:
            tags = self._call(lambda: self.client.get_run(self.run_id).data.tags, "reading")
            attempts = int(tags.get(ATTEMPT_TAG, "0")) + 1
            if ERROR_TAG in tags:
                # The previous attempt's error; its traceback stays among the artifacts.
                self._call(lambda: self.client.delete_tag(self.run_id, ERROR_TAG), "clearing the error")
        self._call(lambda: set_run_status(self.client, self.run_id, RunStatus.RUNNING), "starting")
        node = where_am_i()
        tags = [RunTag(ATTEMPT_TAG, str(attempts)), RunTag(WORKER_PID_TAG, str(os.getpid())),
                RunTag(NODE_TAG, node.address), RunTag(NODE_ID_TAG, node.node_id),
                RunTag(HEARTBEAT_INTERVAL_TAG, f"{self.heartbeat_interval:g}"),
                RunTag(HEARTBEAT_TAG, f"{time.time():.3f}")]
        self._call(lambda: self.client.log_batch(self.run_id, tags=tags), "starting")

    def heartbeat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.3f}")

    @contextmanager
    def beating(self) -> Iterator[None]:
        """Heartbeats from a background thread, so that a long epoch or spectrum never looks like a dead trial."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.heartbeat()
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                    pass

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """A training epoch's metrics, and the epoch reached."""
        self.log_metrics(epoch, metrics, [RunTag(EPOCH_TAG, str(epoch))])

    def log_metrics(self, step: int, metrics: dict[str, float], tags: Sequence[RunTag] = ()) -> None:
        # One timestamp for every try: a retry of a batch the server did store adds no second point.
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        riding = self._riding()
        all_tags = [RunTag(HEARTBEAT_TAG, f"{now / 1000:.3f}"), *riding.values(), *tags]
        self._call(lambda: self.client.log_batch(self.run_id, metrics=batch, tags=all_tags), f"logging step {step}")
        self._sent(riding)

    def _riding(self) -> dict[str, RunTag]:
        with self._pending_lock:
            return dict(self._pending)

    def _sent(self, tags: Mapping[str, RunTag]) -> None:
        """Forget the tags a batch carried, unless a newer value came meanwhile."""
        with self._pending_lock:
            for key, tag in tags.items():
                if self._pending.get(key) is tag:
                    del self._pending[key]

    def flush(self) -> None:
        """Send the tags still waiting for a batch (one request, none when nothing waits)."""
        riding = self._riding()
        if riding:
            self._call(lambda: self.client.log_batch(self.run_id, tags=list(riding.values())), "recording tags")
            self._sent(riding)

    def record_resume(self, resumed_from: int, recomputed: int) -> None:
        tags = [RunTag(RESUMED_FROM_TAG, str(resumed_from)), RunTag(RECOMPUTED_TAG, str(recomputed))]
        self._call(lambda: self.client.log_batch(self.run_id, tags=tags), "recording the resume")

    def last_logged_epoch(self) -> int:
        """The last epoch whose metrics the run holds (0 for none), so a resumed trial never logs one twice."""
        history = self._call(lambda: self.client.get_metric_history(self.run_id, "test_acc"), "reading metrics")
        return max((m.step for m in history), default=0)

    def record_checkpoint(self, epoch: int) -> None:
        """The newest stored checkpoint's epoch, for `sweep status` (resumes list the checkpoints themselves). It
        rides on the next batch (the next epoch's metrics, or flush / finish / fail) instead of a request of its own;
        until then the tag may name the previous checkpoint."""
        with self._pending_lock:
            self._pending[CHECKPOINT_EPOCH_TAG] = RunTag(CHECKPOINT_EPOCH_TAG, str(epoch))

    def log_artifact(self, local_path: Path, artifact_dir: str) -> None:
        self._call(lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_dir), "uploading")

    def finish(self) -> None:
        self.flush()
        self._call(lambda: set_run_status(self.client, self.run_id, RunStatus.FINISHED), "finishing")

    def end_pruned(self, epoch: int) -> None:
        """A search's pruner stopped the trial after ``epoch`` epochs: the run ends KILLED (stopped on purpose, not
        failed), tagged with that epoch."""
        riding = self._riding()
        tags = [*riding.values(), RunTag(PRUNED_TAG, str(epoch))]
        self._call(lambda: self.client.log_batch(self.run_id, tags=tags), "tagging the pruned run")
        self._sent(riding)
        self._call(lambda: set_run_status(self.client, self.run_id, RunStatus.KILLED), "ending the pruned run")

    def fail(self, message: str, traceback_text: str) -> None:
        secrets = self.endpoint.secrets
        riding = self._riding()
        tags = [*riding.values(), RunTag(ERROR_TAG, scrub(message, secrets)[:5000])]
        self._call(lambda: self.client.log_batch(self.run_id, tags=tags), "failing")
        self._sent(riding)
        self._call(lambda: self.client.log_text(self.run_id, scrub(traceback_text, secrets), "error/traceback.txt"),
                   "failing")
        self._call(lambda: set_run_status(self.client, self.run_id, RunStatus.FAILED), "failing")
