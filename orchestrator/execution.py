"""The execution boundary: a planned sweep runs on Ray through its coordinator (the default), or in this process,
one trial after another (``hydra/launcher=basic``, a debugging mode). Both return the trials' outcomes."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.coordinator import SweepProgress, coordinator_actor
from orchestrator.sweep_book import SweepBook, SweepOrder
from workers.spec import TrialOutcome
from workers.vocabulary import RunStatus

POLL_S = 1.0
# How long a new submission waits for the sweep's previous, finishing coordinator to exit.
HANDOVER_S = 60.0
# How long one progress call may take (the coordinator answers in milliseconds unless it is busy in an outage).
PROGRESS_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SweepResult:
    outcomes: tuple[TrialOutcome, ...]
    skipped: int
    # The coordinator's own failure (e.g. a tracking outage past tracking.outage_timeout).
    error: Optional[str] = None

    @property
    def all_finished(self) -> bool:
        return self.error is None and all(o.state == RunStatus.FINISHED for o in self.outcomes)


def execute_in_process(order: SweepOrder, console: Console) -> SweepResult:
    from workers.spectrum_job import run_spectrum_job
    from workers.training.trial import run_trial

    book = SweepBook(order)
    book.open()
    trials = list(order.plan.trials)
    skipped = {t.trial_id for t in book.finished_before(trials)}
    _announce(console, order, {"total": len(trials), "to_run": len(trials) - len(skipped), "new": len(trials)})
    outcomes = []
    for trial in trials:
        if trial.trial_id in skipped:
            continue
        outcome = run_trial(book.prepare(trial))
        if outcome.state == RunStatus.TRAINED:
            outcome = run_spectrum_job(book.spectrum_spec(trial))
        outcomes.append(outcome)
    book.close(trials, all(o.state == RunStatus.FINISHED for o in outcomes))
    return SweepResult(tuple(outcomes), len(skipped))


def submit_to_coordinator(order: SweepOrder, console: Console, detached: bool) -> Any:
    """Hand the plan to the sweep's coordinator (created, or found alive and extended); returns its handle once it
    has accepted the plan."""
    import ray

    deadline = time.monotonic() + HANDOVER_S
    while True:
        # A coordinator that just finished this sweep may still be lingering: it refuses, exits, and a new one is made.
        coordinator = coordinator_actor(order, detached)
        try:
            accepted = ray.get(coordinator.submit.remote(list(order.plan.trials), order.faults))
        except ray.exceptions.RayActorError:
            accepted = {"closing": 1}
        if "closing" not in accepted:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the coordinator of sweep {order.plan.sweep_id} did not hand over within {HANDOVER_S} s")
        time.sleep(0.5)
    _announce(console, order, accepted)
    return coordinator


def _announce(console: Console, order: SweepOrder, accepted: dict[str, int]) -> None:
    plan = order.plan
    skipped = accepted["total"] - accepted["to_run"]
    attached = f" (attached to its live coordinator, {accepted['new']} new)" if accepted["new"] < len(plan.trials) else ""
    console.print(f"sweep [bold]{plan.sweep_id}[/]: {accepted['total']} trial(s), {accepted['to_run']} to run"
                  f"{f', skipping {skipped} finished' if skipped else ''}; launcher {plan.launcher}{attached}")


def follow(coordinator: Any, console: Console) -> Optional[SweepProgress]:
    """Show the coordinator's progress until its sweep is done; None when the coordinator went away first (its
    sweep was cancelled elsewhere, or its node was lost): the caller reads the outcome from MLflow."""
    import ray

    with _progress_bar(console) as bar:
        task = bar.add_task("", total=None)
        while True:
            try:
                progress: SweepProgress = ray.get(coordinator.progress.remote(), timeout=PROGRESS_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayActorError:
                return None
            bar.update(task, total=progress.total - progress.skipped, completed=progress.finished + progress.failed,
                       description=f"queued {progress.queued} | running {progress.running} | "
                                   f"finished {progress.finished} | failed {progress.failed}")
            if progress.done:
                return progress
            time.sleep(POLL_S)


def ask_cancel_or_detach(interactive: bool, read: Callable[[str], str] = input) -> str:
    """After Ctrl-C on a cluster: "cancel" or "detach". Without a terminal to ask, cancel."""
    if not interactive:
        return "cancel"
    try:
        answer = read("\nCtrl-C: [c]ancel the sweep, or [d]etach and let it run on the cluster? [c/d] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        return "cancel"
    return "detach" if answer.startswith("d") else "cancel"


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]trials[/]"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False)
