"""`sweep spectrum RUN_ID|SWEEP_ID`: spectra of stored checkpoints, as Ray tasks, without retraining.

Given a sweep, every trial run gets the spectrum its last checkpoint (or ``--epoch N``) lacks; given a run, that
run. A result is keyed by (trial, checkpoint epoch, protocol): one that exists is not computed again.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Optional

import ray
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from rich.console import Console

from orchestrator.commands import writable_store
from orchestrator.errors import UserError
from orchestrator.planning import Trial
from orchestrator.ray_cluster import check_reachable as check_ray_reachable, connect, resolve_address
from orchestrator.ray_launcher import describe_failure, spectrum_task
from orchestrator.spectrum_plan import SpectrumJob, SpectrumPlan, Skipped, plan_jobs
from orchestrator.status import distinguishing
from orchestrator.tracking import SweepTracker, check_reachable, resolve_target
from workers.spec import SpectrumJobSpec, TrialOutcome
from workers.vocabulary import OVERRIDES_TAG, TRIAL_TAG, RunStatus
from workers.spectrum_protocol import WEIGHT_CHOICES
from workers.trial_config import SpectrumConfig, TrialConfig

POLL_S = 2.0


def launch_spectrum(run_or_sweep: str, epoch: Optional[int], config: TrialConfig, console: Console) -> int:
    weights = config.spectrum.weights
    if weights is not None and weights not in WEIGHT_CHOICES:
        raise UserError(f"spectrum.weights={weights}: must be one of {', '.join(WEIGHT_CHOICES)} or null")
    target = resolve_target(config.tracking)
    check_reachable(target)
    address = resolve_address(config.cluster)
    if address:
        check_ray_reachable(address)
    reader = SweepTracker(target.reader, target.experiment)
    parent = reader.find_parent(run_or_sweep)
    if parent is not None:
        runs = reader.trial_runs(run_or_sweep)
        if not runs:
            raise UserError(f"sweep {run_or_sweep}: has no trial runs yet")
        labels = _labels(runs)
        plan = plan_jobs(reader.client, runs, labels, epoch, config, trained_only=True)
        _describe(plan, f"sweep [bold]{run_or_sweep}[/]: {len(runs)} trial(s)", config, console)
    else:
        run = _trial_run(reader, run_or_sweep)
        runs = {run.data.tags.get(TRIAL_TAG, run_or_sweep): run}
        plan = plan_jobs(reader.client, runs, {}, epoch, config, trained_only=False)
        _refuse_unplannable(plan, run_or_sweep, epoch)
        _describe(plan, f"run [bold]{run_or_sweep}[/]", config, console)
    outcomes: dict[str, TrialOutcome] = {}
    if plan.jobs or parent is not None:
        with writable_store(target) as endpoint:
            if plan.jobs:
                connect(config.cluster)
                started = time.monotonic()
                outcomes = run_jobs(plan.jobs, endpoint, config.spectrum, console)
                console.print(f"{len(plan.jobs)} spectrum job(s) in {time.monotonic() - started:.1f} s")
            if parent is not None:
                _log_figures(endpoint, target.experiment, run_or_sweep, parent.info.run_id, plan, console)
    failed = [o for o in outcomes.values() if o.state != RunStatus.FINISHED]
    for outcome in failed:
        console.print(f"[red]spectrum job of run {outcome.run_id} failed:[/] {outcome.error}")
    return 1 if failed else 0


def run_jobs(jobs: list[SpectrumJob], endpoint: Any, spectrum: SpectrumConfig,
             console: Console) -> dict[str, TrialOutcome]:
    """Every job as a Ray task at once, scheduled as in-sweep spectra are (orchestrator.ray_launcher.spectrum_task);
    one line per job as it ends."""
    task = spectrum_task(spectrum)
    pending = {task.remote(SpectrumJobSpec(j.run_id, endpoint, j.config, (j.epoch,), finishes_trial=False)): j
               for j in jobs}
    outcomes: dict[str, TrialOutcome] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in done:
            job = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as error:
                outcome = TrialOutcome(job.trial_id, job.run_id, RunStatus.FAILED, {}, describe_failure(error))
            outcomes[job.run_id] = outcome
            console.print(f"  {job.label or job.trial_id} (epoch {job.epoch}): {_summary(outcome)}", highlight=False)
    return outcomes


def _summary(outcome: TrialOutcome) -> str:
    if outcome.state != RunStatus.FINISHED:
        return f"[red]failed[/]: {outcome.error}"
    shown = [f"{name} {value:.6g}" for name, value in outcome.final_metrics.items()
             if name.split(".")[0] in ("lambda_max", "lambda_min", "lambda_max_avg", "lambda_min_avg")]
    return "  ".join(shown) or "nothing left to compute"


def _describe(plan: SpectrumPlan, what: str, config: TrialConfig, console: Console) -> None:
    spectrum = config.spectrum
    protocols = sorted({p for job in plan.jobs for p in job.protocols})
    console.print(f"{what}: {len(plan.jobs)} spectrum job(s) to run ({spectrum.steps} Lanczos steps x "
                  f"{spectrum.num_vectors} vectors, {spectrum.num_workers} worker(s) each"
                  f"{'; protocol ' + ', '.join(protocols) if protocols else ''}), {len(plan.skipped)} skipped",
                  highlight=False)
    for reason, skipped in _by_reason(plan.skipped).items():
        names = ", ".join(s.label or s.trial_id for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        console.print(f"  skipped {len(skipped)}: {reason} ({names})", highlight=False)


def _by_reason(skipped: list[Skipped]) -> dict[str, list[Skipped]]:
    grouped: dict[str, list[Skipped]] = {}
    for item in skipped:
        grouped.setdefault(item.reason, []).append(item)
    return grouped


def _refuse_unplannable(plan: SpectrumPlan, run_id: str, epoch: Optional[int]) -> None:
    """One run asked for by id: a run it cannot compute on is an error, not a skip (existing results are)."""
    for skipped in plan.skipped:
        if skipped.reason == "has no checkpoint":
            raise UserError(f"run {run_id}: has no checkpoint to compute a spectrum of")
        if skipped.reason.startswith("has no checkpoint at epoch"):
            epochs = skipped.reason.split("(it has ")[-1].rstrip(")")
            raise UserError(f"--epoch {epoch}: run {run_id} has checkpoints at epochs {epochs}")
        if not skipped.reason.startswith("has this spectrum"):
            raise UserError(f"run {run_id}: {skipped.reason}")


def _trial_run(reader: SweepTracker, run_id: str) -> Run:
    try:
        return reader.client.get_run(run_id)
    except MlflowException:
        raise UserError(f"run {run_id}: no such run or sweep in {reader.endpoint.shown}") from None


def _overrides(run: Run) -> tuple[str, ...]:
    return tuple(json.loads(run.data.tags.get(OVERRIDES_TAG, "[]")))


def _labels(runs: Mapping[str, Run]) -> dict[str, str]:
    """What tells the trials apart (their differing overrides), as `sweep status` shows them."""
    order = list(runs)
    return {t: label or t for t, label in zip(order, distinguishing([_overrides(runs[t]) for t in order]))}


def _log_figures(endpoint: Any, experiment: str, sweep_id: str, parent_run_id: str, plan: SpectrumPlan,
                 console: Console) -> None:
    """The sweep-level picture on the parent run, from every trial's results (those just computed included)."""
    from orchestrator.sweep_figures import log_sweep_spectra

    tracker = SweepTracker(endpoint, experiment)
    runs = tracker.trial_runs(sweep_id)
    trials = [Trial(tid, _overrides(runs[tid]), config) for tid, config in plan.configs.items() if tid in runs]
    logged = log_sweep_spectra(tracker.client, parent_run_id, trials, runs)
    protocols = sorted({path.split("/")[1] for path in logged if path.count("/") == 2})
    if logged:
        console.print(f"sweep figures and table on the parent run {parent_run_id}: spectrum/spectra_table.json, "
                      f"spectrum/<protocol>/*.png for protocol(s) {', '.join(protocols)}", highlight=False)

