"""Run trials as Ray tasks, all in flight at once as far as the cluster's resources allow.

A trial with ``spectrum.enabled`` is two tasks: training, then (once training has released its resources) the
spectrum job, with the spectrum's own resources; the trial's run ends when the second does.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.planning import Trial
from orchestrator.session import SweepSession
from workers.spec import TRAINED, RetryableTrialError, SpectrumJobSpec, TrialOutcome, TrialSpec

POLL_S = 2.0
TRAIN, SPECTRUM = "train", "spectrum"


def _execute_trial(spec: TrialSpec) -> TrialOutcome:
    # Imported here, inside the worker: the control plane never imports torch.
    from workers.training.trial import run_trial

    return run_trial(spec)


def _execute_spectrum(spec: SpectrumJobSpec) -> TrialOutcome:
    from workers.spectrum_job import run_spectrum_job

    return run_spectrum_job(spec)


def _import_trainer() -> None:
    import workers.training.trial  # noqa: F401 - the import is the work: torch, mlflow, the trainer


def warm_up(cluster: Mapping[str, Any], trials: int) -> None:
    """Have idle workers import the trainer now, while the tracking store starts; Ray hands the warm workers the
    trials. Fire and forget: a warm-up never delays or fails a trial."""
    slots = int(ray.available_resources().get("CPU", 0) // max(cluster["num_cpus"], 1e-3))
    task = ray.remote(_import_trainer).options(num_cpus=cluster["num_cpus"], name="warm-up")
    for _ in range(min(trials, slots)):
        task.remote()


def spectrum_task(spectrum: Mapping[str, Any]) -> Any:
    """One worker computes in its own process with the worker's resources; a sharded job is a coordinator that
    holds no resources while its placement group of ``num_workers`` workers does the products."""
    single = spectrum["num_workers"] == 1
    return ray.remote(_execute_spectrum).options(
        num_cpus=spectrum["cpus_per_worker"] if single else 0, num_gpus=spectrum["gpus_per_worker"] if single else 0,
        max_retries=1, name="spectrum",
    )


def run_on_ray(session: SweepSession, trials: list[Trial], console: Console | None = None) -> dict[str, TrialOutcome]:
    cluster = session.plan.settings["cluster"]
    train = ray.remote(_execute_trial).options(
        num_cpus=cluster["num_cpus"], num_gpus=cluster["num_gpus"], max_retries=cluster["max_retries"],
        retry_exceptions=[RetryableTrialError], name="trial",
    )
    pending = {train.remote(session.spec(t)): (t, TRAIN) for t in trials}
    outcomes: dict[str, TrialOutcome] = {}
    with _progress(console) as progress:
        bar = progress.add_task("", total=len(trials))
        next_poll = 0.0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                trial, stage = pending.pop(ref)
                outcome = _collect(session, trial, ref)
                if stage == TRAIN and outcome.state == TRAINED:
                    job = spectrum_task(trial.config["spectrum"]).remote(session.spectrum_spec(trial))
                    pending[job] = (trial, SPECTRUM)
                else:
                    outcomes[trial.trial_id] = outcome
            if time.monotonic() >= next_poll or done:
                in_flight = [t for t, _ in pending.values()]
                running = _count_running(session, in_flight)
                failed = sum(o.state != "FINISHED" for o in outcomes.values())
                progress.update(bar, completed=len(outcomes), description=(
                    f"queued {len(in_flight) - running} | running {running} | "
                    f"finished {len(outcomes) - failed} | failed {failed}"))
                next_poll = time.monotonic() + POLL_S
    return outcomes


def _collect(session: SweepSession, trial: Trial, ref: Any) -> TrialOutcome:
    """The task's outcome; a task that died for good (retries used up) ends its run FAILED here."""
    run_id = session.run_ids[trial.trial_id]
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        message = describe_failure(error)
        session.tracker.fail_run(run_id, message)
        return TrialOutcome(trial.trial_id, run_id, "FAILED", {}, message)


def describe_failure(error: ray.exceptions.RayError) -> str:
    """One line on why a task failed for good: the task's own exception, or how its worker died."""
    cause = getattr(error, "cause", None)
    if isinstance(error, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"[:2000]
    return f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}"[:2000]


def _count_running(session: SweepSession, trials: list[Trial]) -> int:
    waiting = {session.run_ids[t.trial_id] for t in trials}
    if not waiting:
        return 0
    runs = session.tracker.trial_runs(session.plan.sweep_id)
    return sum(1 for r in runs.values() if r.info.run_id in waiting and r.info.status == "RUNNING")


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("[bold]trials[/]"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False)
