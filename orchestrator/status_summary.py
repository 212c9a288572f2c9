"""A sweep's finished trials kept as one artifact on its parent run, so that `sweep status` of a large sweep reads
one file and the few runs that changed since, not every run.

MLflow returns a run with all its params (a trial has about 60), so reading a sweep's runs costs about 4 ms a run:
40 s for 10,000 (benchmarks/status_bench.py). A FINISHED run's status row never changes while it stays FINISHED,
so the summary holds the rows of the runs that were FINISHED when it was read. A reader takes those rows, then reads
only the runs that are not FINISHED now and those that ended after the summary's read began (less the slack for
clocks that differ between nodes that `sweep status` allows heartbeats); their rows replace the summary's. A run
that finished before that read began was in it, so nothing is missed.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from orchestrator.status import CLOCK_SKEW_S, TrialStatus, trial_status
from orchestrator.tracking import SweepTracker
from workers.artifacts import STATUS_SUMMARY
from workers.vocabulary import RunStatus, TrialState

FORMAT = 1
# Runs that ended this long before the summary's read began are read again anyway: end times come from the clocks of
# the nodes that end runs.
CLOCK_MARGIN_S = CLOCK_SKEW_S
# A read through the summary that had to read this many finished runs again keeps a fresh summary, so that the
# next read need not.
REFRESH_AFTER = 100


@dataclasses.dataclass(frozen=True)
class SweepStatuses:
    statuses: dict[str, TrialStatus]
    parent_run_id: Optional[str]
    # When the reads of runs began (seconds since the epoch): every run FINISHED by then has its row here.
    read_at: float
    # Whether the rows of runs finished earlier came from the summary rather than from their runs.
    from_summary: bool
    # Finished runs read (all of them without a summary; those that ended since, with one).
    finished_read: int

    @property
    def worth_keeping(self) -> bool:
        """Whether writing this read as the summary spares the next read much."""
        return not self.from_summary or self.finished_read >= REFRESH_AFTER


def read_statuses(tracker: SweepTracker, sweep_id: str, previous: Optional[SweepStatuses] = None) -> SweepStatuses:
    """Every trial's status row: from the summary (or a ``previous`` read of this reader's, which stands in for it)
    and the runs changed since; with neither, from every run."""
    if previous is None:
        parent = tracker.find_parent(sweep_id)
        parent_run_id = parent.info.run_id if parent is not None else None
        summary = _load(tracker, parent_run_id) if parent_run_id else None
    else:
        parent_run_id = previous.parent_run_id
        summary = previous.read_at, {t: s for t, s in previous.statuses.items() if s.state == TrialState.FINISHED}
    read_at = time.time()
    if summary is None:
        return _statuses(tracker.trial_runs(sweep_id), {}, parent_run_id, read_at, from_summary=False)
    summary_read_at, rows = summary
    since_ms = int((summary_read_at - CLOCK_MARGIN_S) * 1000)
    changed = {**tracker.trial_runs(sweep_id, f"attributes.status != '{RunStatus.FINISHED}'"),
               **tracker.trial_runs(sweep_id, f"attributes.end_time > {since_ms}")}
    return _statuses(changed, rows, parent_run_id, read_at, from_summary=True)


class KeptSummary:
    """A sweep's status summary kept current by its coordinator while trials end: each refresh reads only the runs
    that changed since the last, so neither the end of `sweep run` nor a `sweep status` at any time reads every run
    of a large sweep (a read of every run of 10,000 took 20-30 s through a stock server here)."""

    def __init__(self, tracker: SweepTracker, sweep_id: str) -> None:
        self._tracker, self._sweep_id = tracker, sweep_id
        self._last: Optional[SweepStatuses] = None
        # The coordinator refreshes on a timer and once more when its sweep ends.
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read what changed and keep the summary; a store that fails or refuses leaves the last one (readers then
        read more runs, nothing else)."""
        with self._lock:
            try:
                read = read_statuses(self._tracker, self._sweep_id, self._last)
            except (MlflowException, OSError):
                return
            if write_summary(self._tracker, read):
                self._last = read


def _statuses(runs: dict[str, Run], rows: dict[str, TrialStatus], parent_run_id: Optional[str], read_at: float,
              from_summary: bool) -> SweepStatuses:
    read = {tid: trial_status(run) for tid, run in runs.items()}
    finished = sum(run.info.status == RunStatus.FINISHED for run in runs.values())
    return SweepStatuses({**rows, **read}, parent_run_id, read_at, from_summary, finished)


def write_summary(tracker: SweepTracker, read: SweepStatuses) -> bool:
    """Keep the finished rows of a read on the parent run (a read through an older summary is as complete: it
    re-read every run that ended since); False when the store refuses, as for a reader without write permission."""
    if read.parent_run_id is None:
        return False
    finished = [_row(s) for s in read.statuses.values() if s.state == TrialState.FINISHED]
    try:
        tracker.client.log_dict(read.parent_run_id, {"format": FORMAT, "read_at": read.read_at, "rows": finished},
                                STATUS_SUMMARY)
    except (MlflowException, OSError):
        return False
    return True


def _row(status: TrialStatus) -> dict:
    return {**dataclasses.asdict(status), "overrides": list(status.overrides)}


def _load(tracker: SweepTracker, parent_run_id: str) -> Optional[tuple[float, dict[str, TrialStatus]]]:
    with tempfile.TemporaryDirectory(prefix="status-summary-") as scratch:
        try:
            path = tracker.client.download_artifacts(parent_run_id, STATUS_SUMMARY, scratch)
        except (MlflowException, OSError):
            return None
        data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        return None
    rows = {row["trial_id"]: TrialStatus(**{**row, "overrides": tuple(row["overrides"]),
                                            "state": TrialState(row["state"])}) for row in data["rows"]}
    return float(data["read_at"]), rows
