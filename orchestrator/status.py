"""What ``sweep status`` and the end-of-sweep summary show: one row per trial, from the MLflow runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from mlflow.entities import Run
from rich.console import Console
from rich.table import Table

from workers.run_logger import NODE_ID_TAG, NODE_TAG

FINISHED, RUNNING, FAILED, STALE, PENDING = "finished", "running", "failed", "stale", "pending"
STATE_STYLE = {FINISHED: "green", RUNNING: "cyan", FAILED: "red", STALE: "yellow", PENDING: "dim"}


@dataclass(frozen=True)
class TrialStatus:
    trial_id: str
    run_id: str
    overrides: tuple[str, ...]
    state: str
    epoch: int
    checkpoint_epoch: Optional[int]
    attempts: int
    test_acc: Optional[float]
    train_loss: Optional[float]
    error: Optional[str]
    # The node the latest attempt ran on: its address and the start of its Ray node id.
    node: str


def trial_state(run: Run, heartbeat_timeout: float, now: Optional[float] = None) -> str:
    status = run.info.status
    if status == "FINISHED":
        return FINISHED
    if status in ("FAILED", "KILLED"):
        return FAILED
    if status == "RUNNING":
        beat = float(run.data.tags.get("heartbeat", run.info.start_time / 1000))
        return STALE if (now or time.time()) - beat > heartbeat_timeout else RUNNING
    return PENDING


def trial_status(run: Run, heartbeat_timeout: float) -> TrialStatus:
    tags, metrics = run.data.tags, run.data.metrics
    checkpoint = tags.get("checkpoint_epoch")
    return TrialStatus(
        trial_id=tags["trial_id"],
        run_id=run.info.run_id,
        overrides=tuple(json.loads(tags.get("overrides", "[]"))),
        state=trial_state(run, heartbeat_timeout),
        epoch=int(tags.get("epoch", 0)),
        checkpoint_epoch=int(checkpoint) if checkpoint else None,
        attempts=int(tags.get("attempts", 0)),
        test_acc=metrics.get("test_acc"),
        train_loss=metrics.get("train_loss"),
        error=tags.get("error"),
        node=" ".join(filter(None, (tags.get(NODE_TAG), tags.get(NODE_ID_TAG, "")[:8]))),
    )


def distinguishing(overrides: Sequence[tuple[str, ...]]) -> list[str]:
    """Each trial's overrides less those every trial shares: what tells the trials of a sweep apart."""
    common = set.intersection(*(set(o) for o in overrides)) if len(overrides) > 1 else set()
    return [" ".join(o for o in trial if o not in common) for trial in overrides]


def _fmt(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(statuses: Iterable[TrialStatus], title: str, console: Optional[Console] = None) -> None:
    """One row per trial; the overrides column shows only what differs between trials."""
    statuses = sorted(statuses, key=lambda s: s.overrides)
    labels = distinguishing([s.overrides for s in statuses])
    table = Table(title=title, title_justify="left")
    for column in ("trial", "overrides", "state", "epoch", "ckpt", "tries", "node", "test_acc", "train_loss", "error"):
        table.add_column(column, overflow="fold")
    for s, label in zip(statuses, labels):
        table.add_row(
            s.trial_id, label or "(defaults)", f"[{STATE_STYLE[s.state]}]{s.state}",
            str(s.epoch), "-" if s.checkpoint_epoch is None else str(s.checkpoint_epoch), str(s.attempts), s.node or "-",
            _fmt(s.test_acc), _fmt(s.train_loss), (s.error or "")[:120],
        )
    (console or Console()).print(table)
