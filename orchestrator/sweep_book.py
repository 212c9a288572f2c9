"""The sweep's MLflow bookkeeping, owned by whoever executes the sweep (the coordinator, or this process for the
in-process executor): the parent run, one child run per trial, outcomes, and the end of the parent run.

Whoever holds a book is the sweep's one owner, so every trial without a FINISHED run is its to run: a RUNNING run
is an orphan of a dead owner (a killed driver, a lost coordinator), not a trial to leave alone. Every tracking call
is retried through an outage of up to ``tracking.outage_timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

from mlflow.entities import Run

from orchestrator.identity import identity_config
from orchestrator.planning import SweepPlan, Trial
from orchestrator.tracking import SweepRecord, SweepTracker
from workers.retry import retrying
from workers.spec import SpectrumJobSpec, TrialOutcome, TrialSpec, spectrum_epochs
from workers.vocabulary import RunStatus
from workers.tracking_endpoint import TrackingEndpoint
from workers.trial_config import as_plain

T = TypeVar("T")


@dataclass(frozen=True)
class SweepOrder:
    """Everything an executor needs: the plan, where workers log, and (tests only) faults to inject."""

    plan: SweepPlan
    worker_endpoint: TrackingEndpoint
    # Test-only fault injection: an override (e.g. "optimizer.lr=0.1") -> worker faults; never part of an identity.
    faults: Mapping[str, Mapping[str, Any]]

    def faults_for(self, trial: Trial) -> dict[str, Any]:
        faults: dict[str, Any] = {}
        for override, fault in self.faults.items():
            if override in trial.overrides:
                faults.update(fault)
        return faults


class SweepBook:
    def __init__(self, order: SweepOrder) -> None:
        self.order = order
        tracking = order.plan.base_config.tracking
        self.tracker = SweepTracker(order.worker_endpoint, tracking.experiment)
        self.outage_timeout = float(tracking.outage_timeout)
        self.parent_run_id: Optional[str] = None
        self.run_ids: dict[str, str] = {}
        self._existing: dict[str, Run] = {}
        # Trial id -> (run id, artifact URI) of every run the sweep has, found at open() or created since.
        self._locations: dict[str, tuple[str, str]] = {}

    def _call(self, call: Callable[[], T], what: str) -> T:
        return retrying(call, self.outage_timeout, what)

    def open(self) -> None:
        """The parent run (created or marked RUNNING again) and the runs the sweep already has: two requests."""
        plan = self.order.plan
        record = SweepRecord(plan.arguments, plan.multirun, plan.swept_keys, identity_config(as_plain(plan.base_config)))
        self.parent_run_id = self._call(lambda: self.tracker.ensure_parent(plan.sweep_id, record), "opening the sweep")
        self._existing = self._call(lambda: self.tracker.trial_runs(plan.sweep_id), "reading the sweep's runs")
        self._locations = {tid: (run.info.run_id, run.info.artifact_uri) for tid, run in self._existing.items()}

    def finished_before(self, trials: Iterable[Trial]) -> list[Trial]:
        """Trials whose runs finished in an earlier launch: left alone."""
        return [t for t in trials if t.trial_id in self._existing and self._existing[t.trial_id].info.status == RunStatus.FINISHED]

    def prepare(self, trial: Trial) -> TrialSpec:
        """The trial's run, created now (just before its task) or scheduled again, and the spec of its task."""
        assert self.parent_run_id is not None, "open() first"
        plan = self.order.plan
        known = self._locations.get(trial.trial_id)
        if known is None:
            run = self._call(lambda: self.tracker.open_trial_run(self.parent_run_id, plan.sweep_id, trial.trial_id,
                                                                 trial.overrides, trial.config), "creating a run")
            run_id, artifact_uri = run.run_id, run.artifact_uri
        else:
            run_id, artifact_uri = known
            self._call(lambda: self.tracker.mark_scheduled(run_id), "scheduling a run")
        self._locations[trial.trial_id] = run_id, artifact_uri
        self.run_ids[trial.trial_id] = run_id
        return TrialSpec(trial.trial_id, plan.sweep_id, run_id, self.order.worker_endpoint, trial.config,
                         self.order.faults_for(trial), artifact_uri=artifact_uri, new_run=known is None)

    def spectrum_spec(self, trial: Trial) -> SpectrumJobSpec:
        return SpectrumJobSpec(self.run_ids[trial.trial_id], self.order.worker_endpoint, trial.config,
                               spectrum_epochs(trial.config), finishes_trial=True)

    def fail(self, trial: Trial, message: str, status: RunStatus = RunStatus.FAILED) -> TrialOutcome:
        run_id = self.run_ids[trial.trial_id]
        self._call(lambda: self.tracker.fail_run(run_id, message, status), "recording a failure")
        return TrialOutcome(trial.trial_id, run_id, status, {}, message)

    def close(self, trials: list[Trial], all_finished: bool, status: Optional[RunStatus] = None) -> None:
        """End the parent run, with the sweep's spectrum figures and table when it computed spectra."""
        from orchestrator.sweep_figures import log_sweep_spectra

        assert self.parent_run_id is not None
        if any(t.config.spectrum.enabled for t in trials):
            runs = self._call(lambda: self.tracker.trial_runs(self.order.plan.sweep_id), "reading the sweep's runs")
            self._call(lambda: log_sweep_spectra(self.tracker.client, self.parent_run_id, trials, runs),
                       "plotting the sweep")
        final = status or (RunStatus.FINISHED if all_finished else RunStatus.FAILED)
        self._call(lambda: self.tracker.end_parent(self.parent_run_id, final), "ending the sweep")
