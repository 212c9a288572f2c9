"""A local sweep's last word: its runs end KILLED when its `sweep` process dies, even by kill -9.

Locally the sweep lives in its `sweep` process's tree. When that process dies, Ray's reaper takes the local Ray down
within about two seconds, the coordinator actor with it, and the local store's server gets SIGTERM at once. The
coordinator's own watch on the process races that teardown and can lose it on a loaded machine: its runs then stay
RUNNING forever in the MLflow UI. So the `sweep` process starts a guard beside it, in a session of its own (out of
reach of Ray's reaper and of the terminal's Ctrl-C), that waits on a pipe from it. A clean end sends the all-clear
and the guard exits at once. Anything else (kill -9, an exception unwinding the command) closes the pipe without it:
once the process has ended, the guard takes the store's lock (a `sweep resume` that got there first owns the runs
and leaves the guard nothing to do) and ends the sweep's RUNNING and SCHEDULED runs KILLED, saying why, writing to the
store directly where the dead process served it. Its one line of outcome goes to ``sweep-guard.log`` in the store
directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Optional

from orchestrator.errors import UserError
from orchestrator.processes import is_running
from orchestrator.store_lock import store_lock

if TYPE_CHECKING:  # the guard process itself imports no MLflow until it has runs to end
    from orchestrator.planning import SweepPlan
    from orchestrator.tracking import TrackingTarget

ALL_CLEAR = "all-clear\n"
LOG_NAME = "sweep-guard.log"
# How often the guard looks whether the dead command's process has ended (it may still be unwinding).
EXIT_POLL_S = 0.1
# The states of a run that a dead local sweep still held: started by one of its workers, or submitted to one.


@dataclass(frozen=True)
class GuardOrder:
    """What the guard needs to find the sweep's runs: sent down the pipe, so the URI's credentials are in no
    command line."""

    pid: int
    sweep_id: str
    uri: Optional[str]
    local_dir: str
    experiment: str
    outage_timeout: float



def driver_ended(pid: int) -> str:
    """Why a sweep's runs ended KILLED when its `sweep` process died: the coordinator's words and the guard's."""
    return f"cancelled: its `sweep` process (pid {pid}) ended"


@contextmanager
def local_sweep_hold(target: "TrackingTarget", plan: "SweepPlan") -> Iterator[None]:
    """Held while this process executes a sweep on its own local Ray: the store's lock (one `sweep` process at a
    time), and the guard that ends the sweep's runs if the process dies holding it."""
    outage_timeout = float(plan.base_config.tracking.outage_timeout)
    with store_lock(target.local_dir, plan.sweep_id), _guard(target, plan.sweep_id, outage_timeout):
        yield


@contextmanager
def _guard(target: "TrackingTarget", sweep_id: str, outage_timeout: float) -> Iterator[None]:
    """The guard beside this process; a clean exit sends it the all-clear."""
    order = GuardOrder(os.getpid(), sweep_id, target.uri, str(target.local_dir.resolve()), target.experiment,
                       outage_timeout)
    with open(target.local_dir / LOG_NAME, "ab") as log:
        guard = subprocess.Popen([sys.executable, "-m", "orchestrator.sweep_guard"], stdin=subprocess.PIPE,
                                 stdout=log, stderr=log, start_new_session=True, text=True)
    assert guard.stdin is not None
    _send(guard.stdin, json.dumps(dataclasses.asdict(order)) + "\n")
    clean = False
    try:
        yield
        clean = True
    except UserError:
        clean = True  # a one-line refusal: the command stopped what it had started before saying it
        raise
    finally:
        if clean:
            _send(guard.stdin, ALL_CLEAR)
        guard.stdin.close()
        if clean:
            guard.wait()


def _send(pipe: IO[str], text: str) -> None:
    try:
        pipe.write(text)
        pipe.flush()
    except BrokenPipeError:  # the guard died (e.g. killed with its session): nothing to tell it
        pass


def end_orphaned_runs(order: GuardOrder) -> str:
    """End the runs the dead command held; returns the line for the log."""
    from orchestrator.tracking import SweepTracker, TrackingTarget
    from workers.retry import retrying
    from workers.vocabulary import HELD, RunStatus

    target = TrackingTarget(order.uri, Path(order.local_dir), order.experiment)
    with ExitStack() as held_store:
        try:
            held_store.enter_context(store_lock(target.local_dir, order.sweep_id))
        except UserError:
            return "a new `sweep` process holds the store: the runs are its to resume"
        if not target.has_store:
            return "no store: nothing was recorded"
        # The dead process's server is gone: write to the store itself (a user's server is written through).
        tracker = SweepTracker(target.reader, target.experiment)
        timeout, reason = order.outage_timeout, driver_ended(order.pid)
        parent = retrying(lambda: tracker.find_parent(order.sweep_id), timeout, "finding the sweep")
        runs = retrying(lambda: tracker.trial_runs(order.sweep_id), timeout, "reading the runs")
        held = [run.info.run_id for run in runs.values() if run.info.status in HELD]
        for run_id in held:
            retrying(lambda: tracker.fail_run(run_id, reason, RunStatus.KILLED), timeout, "ending a run")
        if parent is not None and parent.info.status == RunStatus.RUNNING:
            retrying(lambda: tracker.end_parent(parent.info.run_id, RunStatus.KILLED), timeout, "ending the sweep")
        return f"{len(held)} run(s) ended KILLED"


def main() -> None:
    order = GuardOrder(**json.loads(sys.stdin.readline()))
    if sys.stdin.read() == ALL_CLEAR:
        return
    while is_running(order.pid):
        time.sleep(EXIT_POLL_S)
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sweep {order.sweep_id}: its `sweep` process (pid {order.pid}) "
          f"ended without finishing; {end_orphaned_runs(order)}", flush=True)


if __name__ == "__main__":
    main()
