"""The guard that ends a local sweep's runs when its `sweep` process dies: a real process killed with SIGKILL, a real
local store (sqlite, written directly once its server is gone), and a real lock taken by a newcomer."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.mlflow_server import local_store
from orchestrator.processes import is_running
from orchestrator.sweep_guard import LOG_NAME
from orchestrator.store_lock import LOCK_NAME
from orchestrator.tracking import SweepRecord, SweepTracker
from workers.run_status import set_run_status
from trial_configs import compose_trial
from workers.tracking_endpoint import TrackingEndpoint

EXPERIMENT, SWEEP = "guarded", "guarded-sweep"
# The `sweep` process stand-in: holds the store the way `sweep run` does, then ends as the test says.
HOLDER = """
import sys, time
from orchestrator.planning import plan_sweep
from orchestrator.sweep_guard import local_sweep_hold
from orchestrator.tracking import resolve_target
plan = plan_sweep(["sweep.name=%s", "tracking.local_dir=%s", "tracking.experiment=%s"], multirun=False)
with local_sweep_hold(resolve_target(plan.base_config.tracking), plan):
    print("held", flush=True)
    how = sys.stdin.readline().strip()
    if how == "raise":
        raise RuntimeError("the command failed")
    if how == "refuse":
        from orchestrator.errors import UserError
        raise UserError("cluster.num_gpus=8: no node has 8 GPU(s)")
    if how == "hang":
        time.sleep(600)
"""


def _store(directory: Path) -> SweepTracker:
    """A local store holding the sweep: a parent run RUNNING and one trial run in each state."""
    tracker = SweepTracker(TrackingEndpoint(local_store(directory)[0]), EXPERIMENT)
    parent = tracker.ensure_parent(SWEEP, SweepRecord((), True, (), {}))
    for trial_id, status in (("t-running", "RUNNING"), ("t-scheduled", "SCHEDULED"), ("t-finished", "FINISHED"),
                             ("t-failed", "FAILED")):
        run = tracker.open_trial_run(parent, SWEEP, trial_id, (f"trial={trial_id}",), compose_trial())
        set_run_status(tracker.client, run.run_id, status)
    return tracker


def _statuses(tracker: SweepTracker) -> dict[str, str]:
    runs = {tid: run.info.status for tid, run in tracker.trial_runs(SWEEP).items()}
    parent = tracker.find_parent(SWEEP)
    assert parent is not None
    return {**runs, "parent": parent.info.status}


def _hold(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER % (SWEEP, directory, EXPERIMENT)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n", holder.communicate()
    return holder


def _guard_pids(holder_pid: int) -> list[int]:
    """The guard process(es) started by ``holder_pid`` (in sessions of their own, so not among its group)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == holder_pid:
            found.append(int(stat.parent.name))
    return found


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


HELD_BY_THE_DEAD = {"t-running": "KILLED", "t-scheduled": "KILLED", "t-finished": "FINISHED", "t-failed": "FAILED",
                    "parent": "KILLED"}


def test_a_killed_command_s_runs_end_killed_saying_why(tmp_path: Path) -> None:
    tracker = _store(tmp_path)
    holder = _hold(tmp_path)
    (guard,) = _guard_pids(holder.pid)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    _wait_until(lambda: not is_running(guard), 60, "the guard to end the runs and exit")
    assert _statuses(tracker) == HELD_BY_THE_DEAD
    killed = tracker.trial_runs(SWEEP)["t-running"]
    assert killed.data.tags["error"] == f"cancelled: its `sweep` process (pid {holder.pid}) ended"
    log = (tmp_path / LOG_NAME).read_text()
    assert (f"sweep {SWEEP}: its `sweep` process (pid {holder.pid}) ended without finishing; "
            "2 run(s) ended KILLED") in log


def test_a_command_that_fails_with_an_exception_leaves_no_run_running(tmp_path: Path) -> None:
    tracker = _store(tmp_path)
    holder = _hold(tmp_path)
    (guard,) = _guard_pids(holder.pid)
    _, err = holder.communicate("raise\n", timeout=30)
    assert "RuntimeError: the command failed" in err
    _wait_until(lambda: not is_running(guard), 60, "the guard to end the runs and exit")
    assert _statuses(tracker) == HELD_BY_THE_DEAD


@pytest.mark.parametrize("end", ["done", "refuse"])
def test_a_clean_end_sends_the_all_clear_and_the_guard_touches_nothing(tmp_path: Path, end: str) -> None:
    """A finished command, or one that refused in one line (it stopped what it had started before saying so)."""
    tracker = _store(tmp_path)
    before = _statuses(tracker)
    holder = _hold(tmp_path)
    (guard,) = _guard_pids(holder.pid)
    holder.communicate(f"{end}\n", timeout=30)
    assert holder.returncode == (0 if end == "done" else 1)
    assert not is_running(guard), "the command waits for its guard to take the all-clear and exit"
    assert _statuses(tracker) == before
    assert (tmp_path / LOG_NAME).read_text() == ""


def test_a_newcomer_that_took_the_store_first_keeps_the_runs(tmp_path: Path) -> None:
    """A `sweep resume` started the moment the command died holds the store's lock: the runs are its, untouched."""
    tracker = _store(tmp_path)
    before = _statuses(tracker)
    holder = _hold(tmp_path)
    (guard,) = _guard_pids(holder.pid)
    with open(tmp_path / LOCK_NAME) as lock:
        waiter = threading.Thread(target=fcntl.flock, args=(lock, fcntl.LOCK_EX))
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive(), "the command holds the lock"
        holder.send_signal(signal.SIGKILL)
        waiter.join(timeout=30)
        _wait_until(lambda: not is_running(guard), 60, "the guard to exit")
    assert _statuses(tracker) == before
    assert "a new `sweep` process holds the store: the runs are its to resume" in (tmp_path / LOG_NAME).read_text()

