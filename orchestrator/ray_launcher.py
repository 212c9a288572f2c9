"""Run trials as Ray tasks, all in flight at once as far as the cluster's resources allow."""

from __future__ import annotations

import time
from typing import Any

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.planning import Trial
from orchestrator.session import SweepSession
from workers.spec import RetryableTrialError, TrialOutcome, TrialSpec

POLL_S = 2.0


def _execute_trial(spec: TrialSpec) -> TrialOutcome:
    # Imported here, inside the worker: the control plane never imports torch.
    from workers.training.trial import run_trial

    return run_trial(spec)


def run_on_ray(session: SweepSession, trials: list[Trial], console: Console | None = None) -> dict[str, TrialOutcome]:
    cluster = session.plan.settings["cluster"]
    task = ray.remote(_execute_trial).options(
        num_cpus=cluster["num_cpus"], num_gpus=cluster["num_gpus"], max_retries=cluster["max_retries"],
        retry_exceptions=[RetryableTrialError], name="trial",
    )
    pending = {task.remote(session.spec(t)): t for t in trials}
    outcomes: dict[str, TrialOutcome] = {}
    with _progress(console) as progress:
        bar = progress.add_task("", total=len(trials))
        next_poll = 0.0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                trial = pending.pop(ref)
                outcomes[trial.trial_id] = _collect(session, trial, ref)
            if time.monotonic() >= next_poll or done:
                running = _count_running(session, pending.values())
                failed = sum(o.state != "FINISHED" for o in outcomes.values())
                progress.update(bar, completed=len(outcomes), description=(
                    f"queued {len(pending) - running} | running {running} | "
                    f"finished {len(outcomes) - failed} | failed {failed}"))
                next_poll = time.monotonic() + POLL_S
    return outcomes


def _collect(session: SweepSession, trial: Trial, ref: Any) -> TrialOutcome:
    """The trial's outcome; a task that died for good (retries used up) ends its run FAILED here."""
    run_id = session.run_ids[trial.trial_id]
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        message = _describe(error)
        session.tracker.fail_run(run_id, message)
        return TrialOutcome(trial.trial_id, run_id, "FAILED", {}, message)


def _describe(error: ray.exceptions.RayError) -> str:
    """One line on why a task failed for good: the trial's own exception, or how its worker died."""
    cause = getattr(error, "cause", None)
    if isinstance(error, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"[:2000]
    return f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}"[:2000]


def _count_running(session: SweepSession, trials: Any) -> int:
    waiting = {session.run_ids[t.trial_id] for t in trials}
    if not waiting:
        return 0
    runs = session.tracker.trial_runs(session.plan.sweep_id)
    return sum(1 for r in runs.values() if r.info.run_id in waiting and r.info.status == "RUNNING")


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("[bold]trials[/]"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False)
