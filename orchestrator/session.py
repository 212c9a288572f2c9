"""The sweep being launched: its plan, its MLflow runs, and the trials still to run.

Hydra calls our launcher (or, with ``hydra/launcher=basic``, the task function) from inside ``hydra.main``; the
session is how they find the runs the CLI prepared, so the same grid point never gets a second child run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, Optional, Sequence

from orchestrator.identity import identity_config, trial_id
from orchestrator.planning import SweepPlan, Trial
from orchestrator.status import FINISHED, RUNNING, trial_state
from orchestrator.tracking import SweepRecord, SweepTracker
from workers.spec import SpectrumJobSpec, TrialSpec, spectrum_epochs
from workers.tracking_endpoint import TrackingEndpoint

# Test-only fault injection: JSON mapping an override (e.g. "optimizer.lr=0.1") to worker faults
# ({"raise_at_epoch": 1} or {"nan_at_epoch": 1}); not part of any trial's identity.
FAULTS_ENV = "SWEEP_FAULTS"


@dataclass
class SweepSession:
    plan: SweepPlan
    tracker: SweepTracker
    # Where the workers log (the local server's URI, when the store is local).
    worker_endpoint: TrackingEndpoint
    parent_run_id: str
    run_ids: dict[str, str]
    # Trials left alone: finished, or running with a live heartbeat (another driver owns them).
    skipped: set[str] = field(default_factory=set)

    @property
    def to_run(self) -> list[Trial]:
        return [t for t in self.plan.trials if t.trial_id not in self.skipped]

    def trial_for(self, config: Mapping[str, Any]) -> Trial:
        tid = trial_id(config)
        return next(t for t in self.plan.trials if t.trial_id == tid)

    def trial_for_overrides(self, overrides: Sequence[str], compose: Callable[[Sequence[str]], Mapping[str, Any]]) -> Trial:
        """The planned trial of a grid point. The plan expanded the grid with the sweeper's own algorithm, so the
        overrides match; composing again (about 0.1 s a point) is only the fallback."""
        return self._by_overrides.get(tuple(overrides)) or self.trial_for(compose(overrides))

    @cached_property
    def _by_overrides(self) -> dict[tuple[str, ...], Trial]:
        return {t.overrides: t for t in self.plan.trials}

    def spec(self, trial: Trial) -> TrialSpec:
        return TrialSpec(trial.trial_id, self.plan.sweep_id, self.run_ids[trial.trial_id], self.worker_endpoint,
                         trial.config, _faults_for(trial))

    def spectrum_spec(self, trial: Trial) -> SpectrumJobSpec:
        return SpectrumJobSpec(self.run_ids[trial.trial_id], self.worker_endpoint, trial.config,
                               spectrum_epochs(trial.config), finishes_trial=True)


def _faults_for(trial: Trial) -> dict[str, Any]:
    table = json.loads(os.environ.get(FAULTS_ENV, "{}"))
    faults: dict[str, Any] = {}
    for override, fault in table.items():
        if override in trial.overrides:
            faults.update(fault)
    return faults


def open_session(plan: SweepPlan, tracker: SweepTracker, worker_endpoint: TrackingEndpoint) -> SweepSession:
    """Find or create the parent run and one child run per trial.

    Finished and live-running trials are left alone; failed, stale and never-started ones are scheduled again in
    their existing runs, where they resume from their latest checkpoints.
    """
    record = SweepRecord(plan.arguments, plan.multirun, plan.swept_keys, identity_config(plan.base_config))
    parent = tracker.ensure_parent(plan.sweep_id, record)
    existing = tracker.trial_runs(plan.sweep_id)
    timeout = plan.settings["tracking"]["heartbeat_timeout"]
    run_ids, skipped = {}, set()
    for trial in plan.trials:
        run = existing.get(trial.trial_id)
        if run is None:
            run_ids[trial.trial_id] = tracker.create_trial_run(parent, plan.sweep_id, trial.trial_id, trial.overrides,
                                                               trial.config)
            continue
        run_ids[trial.trial_id] = run.info.run_id
        if trial_state(run, timeout) in (FINISHED, RUNNING):
            skipped.add(trial.trial_id)
        else:
            tracker.mark_scheduled(run.info.run_id)
    return SweepSession(plan, tracker, worker_endpoint, parent, run_ids, skipped)


_active: Optional[SweepSession] = None


def activate(session: Optional[SweepSession]) -> None:
    global _active
    _active = session


def active() -> SweepSession:
    if _active is None:
        raise RuntimeError("no sweep is being launched: run trials with the `sweep run` command")
    return _active
