"""The sweep's one owner on the cluster: a Ray actor named after the sweep.

It creates or finds the MLflow runs, submits the trial tasks, chains the spectrum jobs, records outcomes (retrying
its tracking calls through outages) and ends the parent run. The CLI is only its client: it follows the progress,
or detaches and lets the sweep go on without it. Because the actor is found by name, a second ``sweep run`` or
``sweep resume`` of the same sweep reaches the same owner (``get_if_exists``: one atomic get-or-create) and hands it
only the grid points it does not have; nothing is launched twice. Whether a trial is running is known here (a task
in flight), not guessed from heartbeats.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import ray

from orchestrator.planning import Trial
from orchestrator.processes import is_running
from orchestrator.ray_launcher import describe_failure, spectrum_task, train_task
from orchestrator.sweep_book import SweepBook, SweepOrder
from orchestrator.status_summary import KeptSummary
from orchestrator.sweep_guard import driver_ended
from orchestrator.tracking import SweepTracker, resolve_target
from workers.ownership import GO, PRUNE, STOP
from workers.spec import TrialOutcome
from workers.vocabulary import RunStatus, TrialState
from workers.trial_config import TrackingConfig

NAMESPACE = "curvature-sweeps"
# A finished coordinator stays this long, so that clients following it read the final state, then exits.
LINGER_S = 10.0
# How often the sweep's status summary is brought up to date while trials end (see KeptSummary).
SUMMARY_EVERY_S = 120.0
# How often a local sweep's coordinator checks that its `sweep` process is alive.
DRIVER_WATCH_S = 0.5
TRAIN, SPECTRUM = "train", "spectrum"


def coordinator_name(sweep_id: str, tracking: TrackingConfig) -> str:
    """One coordinator per sweep and store: a sweep of the same id recorded in another store or experiment is
    another sweep, and must not attach to this one's owner."""
    return f"sweep:{sweep_id}@{resolve_target(tracking).store_key}"


@dataclass(frozen=True)
class SweepProgress:
    """The coordinator's own view of its sweep: no MLflow read behind it."""

    total: int
    queued: int
    running: int
    finished: int
    failed: int
    # Trials finished in an earlier launch, left alone.
    skipped: int
    done: bool
    outcomes: tuple[TrialOutcome, ...]
    # Set when the coordinator itself failed (e.g. the tracking server stayed away past tracking.outage_timeout).
    error: Optional[str] = None
    # Trials its search pruned (their outcomes are KILLED, counted among the finished, not the failed).
    pruned: tuple[str, ...] = ()

    @property
    def in_flight(self) -> int:
        return self.queued + self.running


class SweepCoordinator:
    """Runs as a threaded Ray actor: one thread waits on the tasks, the others answer the CLI."""

    def __init__(self, order: SweepOrder, driver_pid: Optional[int] = None) -> None:
        self.book = SweepBook(order)
        self.cluster = order.plan.base_config.cluster
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.trials: dict[str, Trial] = {}
        self.queue: list[Trial] = []
        self.pending: dict[Any, tuple[Trial, str]] = {}
        self.started: set[str] = set()
        self.outcomes: dict[str, TrialOutcome] = {}
        self.skipped: set[str] = set()
        self.error: Optional[str] = None
        # A search's exchange with its trials, under a lock of its own that no tracking call is ever made under:
        # each epoch's objective as the trials report it, the driver's prune orders (trial id -> the epoch the
        # decision was made on), and the trials that stopped on one.
        self.exchange = threading.Lock()
        self.reported: dict[str, dict[int, Optional[float]]] = {}
        self.prune_orders: dict[str, int] = {}
        self.pruned: set[str] = set()
        self.cancelled = False
        self.closed = False
        self.opened = False
        # Set once the work loop has ended: no more grid points are taken.
        self.exiting = False
        self.thread: Optional[threading.Thread] = None
        self.handle = ray.get_runtime_context().current_actor
        # Its own tracker: the keeper's thread reads while the work loop writes.
        self.summary = KeptSummary(SweepTracker(order.worker_endpoint, order.plan.base_config.tracking.experiment),
                                   order.plan.sweep_id)
        threading.Thread(target=self._keep_summary, name="summary-keeper", daemon=True).start()
        if driver_pid is not None:
            threading.Thread(target=self._cancel_when_gone, args=(driver_pid,), name="driver-watch", daemon=True).start()

    # --- the CLI's calls -------------------------------------------------------------------------------------------

    def submit(self, trials: list[Trial], faults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, int]:
        """Take the grid points this sweep does not have yet; returns how many are new and how many it holds, or
        ``{"closing": 1}`` when this coordinator has finished and is about to exit (the caller makes a new one).
        ``faults``: the submitting command's test-only faults, which apply to the trials launched from now on."""
        with self.lock:
            if self.exiting:
                return {"closing": 1}
            if faults is not None:
                self.book.order = dataclasses.replace(self.book.order, faults=faults)
            if not self.opened:
                self.book.open()
                self.opened = True
            new = [t for t in trials if t.trial_id not in self.trials]
            for trial in new:
                self.trials[trial.trial_id] = trial
            done_before = {t.trial_id for t in self.book.finished_before(new)}
            self.skipped |= done_before
            # A resume (or the same command again) while this coordinator lingers after its sweep: the trials it saw
            # fail are run again, like any coordinator would (a pruned trial did not fail).
            again = [self.trials[t.trial_id] for t in trials
                     if t.trial_id in self.outcomes and not self._done(t.trial_id)]
            for trial in again:
                del self.outcomes[trial.trial_id]
            to_queue = [t for t in new if t.trial_id not in done_before] + again
            self.queue.extend(to_queue)
            if to_queue and self.closed:
                self.book.open()  # the parent run is RUNNING again
                self.closed = False
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="coordinator", daemon=True)
                self.thread.start()
            self.wake.notify_all()
            return {"new": len(new), "total": len(self.trials), "to_run": len(self.queue) + len(self.pending)}

    def progress(self) -> SweepProgress:
        with self.lock:
            in_flight = {t.trial_id for t, _ in self.pending.values()}
            running = len(in_flight & self.started)
            failed = sum(not self._done(tid) for tid in self.outcomes)
            return SweepProgress(len(self.trials), len(self.queue) + len(in_flight) - running, running,
                                 len(self.outcomes) - failed, failed, len(self.skipped), self.closed,
                                 tuple(self.outcomes.values()), self.error, tuple(sorted(self.pruned)))

    def trial_states(self) -> dict[str, TrialState]:
        """Trial id -> queued or running for every trial this owner has in hand."""
        with self.lock:
            states = {t.trial_id: TrialState.QUEUED for t in self.queue}
            for trial, _ in self.pending.values():
                states[trial.trial_id] = TrialState.RUNNING if trial.trial_id in self.started else TrialState.QUEUED
            return states

    def trial_started(self, trial_id: str) -> None:
        with self.lock:
            self.started.add(trial_id)

    def owns(self, trial_id: str) -> bool:
        """Whether a trial's task is still this owner's to run; its worker asks before it starts and before it ends
        the run (and :meth:`report` asks it after each epoch), so a task that outlives a cancel (or a retry Ray starts
        after one) stops without writing. Lock-free: the answer must not wait behind a tracking call."""
        return not self.cancelled and trial_id in self.trials

    def report(self, trial_id: str, epoch: int, objective: Optional[float]) -> str:
        """A trial's one call per epoch, once the epoch is logged: it records the epoch's objective (for a search's
        pruner) and answers go, stop (no longer owned: as :meth:`owns` answering False) or prune. Never waits behind
        a tracking call."""
        if not self.owns(trial_id):
            return STOP
        with self.exchange:
            self.reported.setdefault(trial_id, {})[epoch] = objective
            return PRUNE if trial_id in self.prune_orders else GO

    def reports(self, trial_ids: list[str]) -> dict[str, dict[int, Optional[float]]]:
        """The per-epoch objectives the given trials have reported so far."""
        with self.exchange:
            return {tid: dict(self.reported[tid]) for tid in trial_ids if tid in self.reported}

    def prune(self, trial_id: str, epoch: int) -> None:
        """The search's pruner stops a trial on its report of ``epoch``: its next report is answered "prune"."""
        with self.exchange:
            self.prune_orders.setdefault(trial_id, epoch)

    def cancel(self, reason: str = "cancelled by `sweep cancel`") -> Optional[int]:
        """Stop every task of the sweep; their runs end KILLED (``sweep resume`` picks them up later). Returns how
        many trials it stopped, or None when the sweep was already cancelled or has finished: this coordinator is
        only lingering, with nothing to stop."""
        with self.lock:
            if self.cancelled or self.closed:
                return None
            self.cancelled = True
            victims = [trial for trial, _ in self.pending.values()] + list(self.queue)
            for ref in list(self.pending):
                ray.cancel(ref, force=True, recursive=True)
            self.pending.clear()
            self.queue.clear()
            for trial in victims:
                if trial.trial_id in self.book.run_ids:
                    self.outcomes[trial.trial_id] = self.book.fail(trial, reason, RunStatus.KILLED)
            self._close()
            self.wake.notify_all()
            return len(victims)

    def shutdown(self) -> None:
        ray.actor.exit_actor()

    # --- the coordinator's own threads ------------------------------------------------------------------------------

    def _cancel_when_gone(self, pid: int) -> None:
        """The sweep fate-shares with its `sweep` process: when that process dies (even by kill -9) its tasks are
        stopped at once, so a resume started right after never finds a second writer on the same runs. Locally, Ray's
        teardown may kill this actor before it has ended the runs; the process's guard (``sweep_guard``) ends them."""
        while is_running(pid):
            time.sleep(DRIVER_WATCH_S)
        self.cancel(driver_ended(pid))

    def _keep_summary(self) -> None:
        while not self.exiting:
            time.sleep(SUMMARY_EVERY_S)
            if self.opened and not self.exiting:
                self.summary.refresh()

    def _run(self) -> None:
        """Work until the sweep is done and no new grid point came for LINGER_S, then exit."""
        try:
            self._loop()
        except Exception as error:  # noqa: BLE001 - reported to every client through progress()
            traceback.print_exc()
            with self.lock:
                self.error = f"{type(error).__name__}: {error}"
                self.closed = self.exiting = True
            time.sleep(LINGER_S)
        if self.cancelled:
            time.sleep(1.0)
        self.handle.shutdown.remote()

    def _loop(self) -> None:
        while True:
            with self.lock:
                if self.cancelled:
                    self.exiting = True
                    return
                if self.queue and len(self.pending) < self._window():
                    self._launch(self.queue.pop(0))
                    continue
                if not self.pending:
                    if not self.closed:
                        self._close()
                    if not self.wake.wait_for(lambda: bool(self.queue) or self.cancelled, timeout=LINGER_S):
                        self.exiting = True
                        return
                    continue
                refs = list(self.pending)
            done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            for ref in done:
                with self.lock:
                    if ref in self.pending:
                        self._collect(ref)

    def _window(self) -> int:
        """How many tasks to keep submitted: twice what the cluster can run at once (at least 2), so that a freed
        slot finds a task waiting. A trial's run is created when it is submitted, so a large grid's first trial
        starts at once and the runs come as the trials do (an autoscaler still sees the queued demand)."""
        resources = ray.cluster_resources()
        slots = [resources.get(kind, 0.0) / float(need) for kind, need in
                 (("CPU", self.cluster.num_cpus), ("GPU", self.cluster.num_gpus)) if need]
        return max(2, 2 * int(min(slots))) if slots else len(self.queue) + len(self.pending)

    def _launch(self, trial: Trial) -> None:
        spec = self.book.prepare(trial)
        self.pending[train_task(self.cluster).remote(dataclasses.replace(spec, owner=self.handle))] = (trial, TRAIN)

    def _collect(self, ref: Any) -> None:
        trial, stage = self.pending.pop(ref)
        try:
            outcome: TrialOutcome = ray.get(ref)
        except ray.exceptions.RayError as error:
            outcome = self.book.fail(trial, describe_failure(error))
        if stage == TRAIN and outcome.state == RunStatus.TRAINED:
            job = spectrum_task(trial.config.spectrum).remote(self.book.spectrum_spec(trial))
            self.pending[job] = (trial, SPECTRUM)
            return
        self.started.discard(trial.trial_id)
        self.outcomes[trial.trial_id] = outcome
        with self.exchange:
            # Only a prune order stops a trial KILLED while its sweep is not cancelled (a cancel ends its runs).
            if outcome.state == RunStatus.KILLED and trial.trial_id in self.prune_orders and not self.cancelled:
                self.pruned.add(trial.trial_id)

    def _close(self) -> None:
        trials = list(self.trials.values())
        all_finished = all(t.trial_id in self.skipped or (t.trial_id in self.outcomes and self._done(t.trial_id))
                           for t in trials)
        # Before the parent run ends: whoever reads the ended sweep finds its summary current.
        self.summary.refresh()
        self.book.close(trials, all_finished, RunStatus.KILLED if self.cancelled else None)
        self.closed = True

    def _done(self, trial_id: str) -> bool:
        """Whether a trial with an outcome needs nothing more: it finished, or its search pruned it."""
        return self.outcomes[trial_id].state == RunStatus.FINISHED or trial_id in self.pruned



def coordinator_actor(order: SweepOrder, detached: bool) -> Any:
    """The sweep's coordinator: found if it is alive, else created (atomically, by name). It holds no CPU and runs
    on the head node, which outlives the worker nodes. On a cluster it is detached (it outlives the `sweep` command);
    locally it fate-shares with the command's process."""
    name = coordinator_name(order.plan.sweep_id, order.plan.base_config.tracking)
    options: dict[str, Any] = dict(name=name, namespace=NAMESPACE, get_if_exists=True,
                                   num_cpus=0, max_concurrency=16, max_restarts=0,
                                   resources={"node:__internal_head__": 0.001})
    if detached:
        options["lifetime"] = "detached"
    return ray.remote(SweepCoordinator).options(**options).remote(order, None if detached else os.getpid())


def find_coordinator(sweep_id: str, tracking: TrackingConfig) -> Optional[Any]:
    """The live coordinator of a sweep recorded where ``tracking`` says, on the connected cluster, or None."""
    try:
        return ray.get_actor(coordinator_name(sweep_id, tracking), namespace=NAMESPACE)
    except ValueError:
        return None


def ask_coordinator(sweep_id: str, tracking: TrackingConfig, method: str, timeout: float) -> Optional[Any]:
    """``method``'s answer from the sweep's live coordinator, or None without one. A coordinator found by name may
    exit before it answers (it exits a second after a cancel, LINGER_S after its sweep): that is "none" too."""
    coordinator = find_coordinator(sweep_id, tracking)
    if coordinator is None:
        return None
    try:
        return ray.get(getattr(coordinator, method).remote(), timeout=timeout)
    except ray.exceptions.RayActorError:
        return None

