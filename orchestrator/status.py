"""What ``sweep status`` and the end-of-sweep summary show: one row per trial, from the MLflow runs."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

from mlflow.entities import Run
from rich.console import Console
from rich.table import Table

from workers.vocabulary import (ATTEMPT_TAG, CHECKPOINT_EPOCH_TAG, EPOCH_TAG, ERROR_TAG, HEARTBEAT_INTERVAL_TAG,
                                HEARTBEAT_TAG, NODE_ID_TAG, NODE_TAG, OVERRIDES_TAG, PRUNED_TAG, TRIAL_TAG, RunStatus,
                                TrialState)

# The states that need nothing more: a search's pruned trial is done, not failed.
DONE = (TrialState.FINISHED, TrialState.PRUNED)
# A run is stale after this many missed beats of its own interval, plus this slack for skewed clocks.
STALE_AFTER_BEATS, CLOCK_SKEW_S = 4, 60.0
# Runs recorded before the interval was recorded.
DEFAULT_INTERVAL_S = 30.0
# Beyond this many trials a table lists only those not done (see `render`).
ROW_LIMIT = 200
# The rows that need attention, worst first.
ATTENTION_ORDER = (TrialState.FAILED, TrialState.STALE, TrialState.KILLED, TrialState.RUNNING, TrialState.QUEUED,
                   TrialState.PENDING)
STATE_STYLE = {TrialState.FINISHED: "green", TrialState.RUNNING: "cyan", TrialState.FAILED: "red",
               TrialState.KILLED: "magenta", TrialState.STALE: "yellow", TrialState.PENDING: "dim",
               TrialState.QUEUED: "dim", TrialState.PRUNED: "blue"}


@dataclass(frozen=True)
class TrialStatus:
    trial_id: str
    run_id: str
    overrides: tuple[str, ...]
    state: TrialState
    epoch: int
    checkpoint_epoch: Optional[int]
    attempts: int
    test_acc: Optional[float]
    train_loss: Optional[float]
    error: Optional[str]
    # The node the latest attempt ran on: its address and the start of its Ray node id.
    node: str


def trial_state(run: Run, now: Optional[float] = None) -> TrialState:
    """The state MLflow alone can tell. A RUNNING run whose owner cannot be asked is stale once it has missed a few of
    its own beats (its recorded interval, not the reader's), with slack for clocks that differ between nodes."""
    status = run.info.status
    if status == RunStatus.FINISHED:
        return TrialState.FINISHED
    if status == RunStatus.FAILED:
        return TrialState.FAILED
    if status == RunStatus.KILLED:
        # Stopped by its search's pruner (tagged with the epoch it stopped at), or cancelled.
        return TrialState.PRUNED if PRUNED_TAG in run.data.tags else TrialState.KILLED
    if status == RunStatus.RUNNING:
        tags = run.data.tags
        beat = float(tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
        interval = float(tags.get(HEARTBEAT_INTERVAL_TAG, DEFAULT_INTERVAL_S))
        stale = (now or time.time()) - beat > STALE_AFTER_BEATS * interval + CLOCK_SKEW_S
        return TrialState.STALE if stale else TrialState.RUNNING
    return TrialState.PENDING


def trial_status(run: Run) -> TrialStatus:
    tags, metrics = run.data.tags, run.data.metrics
    checkpoint = tags.get(CHECKPOINT_EPOCH_TAG)
    return TrialStatus(
        trial_id=tags[TRIAL_TAG],
        run_id=run.info.run_id,
        overrides=tuple(json.loads(tags.get(OVERRIDES_TAG, "[]"))),
        state=trial_state(run),
        epoch=int(tags.get(EPOCH_TAG, 0)),
        checkpoint_epoch=int(checkpoint) if checkpoint else None,
        attempts=int(tags.get(ATTEMPT_TAG, 0)),
        test_acc=metrics.get("test_acc"),
        train_loss=metrics.get("train_loss"),
        error=tags.get(ERROR_TAG),
        node=" ".join(filter(None, (tags.get(NODE_TAG), tags.get(NODE_ID_TAG, "")[:8]))),
    )


def with_owner_state(status: TrialStatus, live: Mapping[str, TrialState]) -> TrialStatus:
    """The status as the sweep's live owner knows it: queued or running when it has the trial in hand; a run that
    MLflow shows RUNNING but the owner does not hold is an orphan of an earlier owner, to be resumed."""
    if status.trial_id in live:
        return dataclasses.replace(status, state=live[status.trial_id])
    if status.state in (TrialState.RUNNING, TrialState.STALE):
        return dataclasses.replace(status, state=TrialState.STALE)
    return status


def distinguishing(overrides: Sequence[tuple[str, ...]]) -> list[str]:
    """Each trial's overrides less those every trial shares: what tells the trials of a sweep apart."""
    common = set.intersection(*(set(o) for o in overrides)) if len(overrides) > 1 else set()
    return [" ".join(o for o in trial if o not in common) for trial in overrides]


def _fmt(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(statuses: Iterable[TrialStatus], sweep_id: str, console: Optional[Console] = None, *, live: bool = False,
           every_trial: bool = False) -> None:
    """One row per trial; the overrides column shows only what differs between trials.

    Beyond ROW_LIMIT trials only the rows that are not done are listed (worst first), after a count of every
    state: a terminal table of 10,000 rows is unreadable, and rendering it took rich 6.5 s of a 10,000-run
    `sweep status` on this machine. ``every_trial`` (`sweep status --all`) lists them all.
    """
    statuses = sorted(statuses, key=lambda s: s.overrides)
    rows = list(zip(statuses, distinguishing([s.overrides for s in statuses])))
    console = console or Console()
    if not every_trial and len(rows) > ROW_LIMIT:
        rows = sorted(((s, label) for s, label in rows if s.state not in DONE),
                      key=lambda row: ATTENTION_ORDER.index(row[0].state))
        counts = Counter(s.state for s in statuses)
        console.print(f"sweep [bold]{sweep_id}[/]: {len(statuses)} trial(s): "
                      + ", ".join(f"{counts[state]} {state}" for state in TrialState if counts[state]))
    table = Table(title=f"sweep {sweep_id}" + (" (live, from its coordinator)" if live else ""), title_justify="left")
    for column in ("trial", "overrides", "state", "epoch", "ckpt", "tries", "node", "test_acc", "train_loss", "error"):
        table.add_column(column, overflow="fold")
    for s, label in rows[:ROW_LIMIT] if not every_trial else rows:
        table.add_row(
            s.trial_id, label or "(defaults)", f"[{STATE_STYLE[s.state]}]{s.state}",
            str(s.epoch), "-" if s.checkpoint_epoch is None else str(s.checkpoint_epoch), str(s.attempts), s.node or "-",
            _fmt(s.test_acc), _fmt(s.train_loss), (s.error or "")[:120],
        )
    if table.rows:
        console.print(table)
    unlisted = len(statuses) - len(table.rows)
    if unlisted:
        console.print(f"{unlisted} of {len(statuses)} trial(s) not listed; `sweep status {sweep_id} --all` lists "
                      "every trial")
