"""One batch of a Hydra sweeper's jobs, run as trials of the sweep: each job composed, validated and identified as a
grid point is, the batch handed to the sweep's coordinator (the grid's execution), and each job's return value the
trial's objective (``sweep.objective`` of its last epoch). The Hydra launcher plugin
(hydra_plugins/curvature_sweeps) is a shim over this.

With ``sweep.pruner`` set, the batch's running trials are judged while it runs: the objectives they report each
epoch go into their study trials, and a trial the pruner stops is told so by the coordinator at its next epoch. A
pruned trial's return value is its last reported objective (the sweeper can only tell a trial COMPLETE or FAIL; its
sampler then ranks it by that value, as optuna ranks a pruned trial by its last intermediate value); a config pruned
in an earlier launch and proposed again gets the same value from its run, without running again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

from orchestrator.composition import Composer, to_trial_config
from orchestrator.errors import UserError
from orchestrator.identity import trial_id
from orchestrator.planning import SweepPlan, Trial
from orchestrator.search_plan import plan_search, user_arguments
from orchestrator.study import StudyPruner
from orchestrator.tracking import SweepTracker, resolve_target
from orchestrator.validation import validate_trial
from workers.spec import TrialOutcome
from workers.vocabulary import PRUNED_TAG, RunStatus
from workers.tracking_endpoint import TrackingEndpoint
from workers.trial_config import as_plain

POLL_S = 0.5
# How often a coordinator that went away between two batches (it lingers 10 s once idle) is created again.
ATTEMPTS = 3


class TrialFailed(RuntimeError):
    """A job whose trial did not finish with its objective: the sweeper records the trial as failed."""


@dataclasses.dataclass
class BatchRunner:
    plan: SweepPlan
    endpoint: TrackingEndpoint
    faults: dict[str, Any]
    # The study's pruner when sweep.pruner is set.
    pruner: Optional[StudyPruner] = None

    @classmethod
    def from_hydra(cls, config: DictConfig, store_uri: Optional[str]) -> "BatchRunner":
        """Everything from the multirun's own config: the user's arguments, the local store's server if the driver
        started one, and the study (``hydra.sweeper.storage`` and ``study_name``) for the pruner."""
        from orchestrator.commands import FAULTS_ENV

        arguments = user_arguments(list(config.hydra.overrides.hydra), list(config.hydra.overrides.task))
        plan = plan_search(Composer(), arguments)
        target = resolve_target(plan.base_config.tracking)
        endpoint = TrackingEndpoint(store_uri) if store_uri else target.endpoint
        sweep = plan.base_config.sweep
        pruner = (StudyPruner(str(config.hydra.sweeper.storage.path), str(config.hydra.sweeper.study_name), sweep)
                  if sweep.pruner is not None else None)
        return cls(plan, endpoint, json.loads(os.environ.get(FAULTS_ENV, "{}")), pruner)

    def trials(self, job_overrides: Sequence[Sequence[str]]) -> list[Trial]:
        compose = Composer()
        trials = []
        for overrides in job_overrides:
            config = to_trial_config(compose.point(list(overrides)))
            validate_trial(config)
            chosen = tuple(o for o in overrides if o.partition("=")[0].lstrip("+~") in self.plan.swept_keys)
            trials.append(Trial(trial_id(as_plain(config)), chosen or tuple(overrides), config))
        return trials

    def run(self, trials: list[Trial]) -> list[float | Exception]:
        """Each trial's objective, or why it has none; trials the sweep finished or pruned before are not run
        again."""
        from orchestrator.sweep_book import SweepOrder

        numbers = self.pruner.batch_trials([t.overrides for t in trials]) if self.pruner else [None] * len(trials)
        watch = _PruningWatch(self.pruner, trials, numbers) if self.pruner else None
        pruned_before = self._pruned_runs()
        unique = [t for t in {t.trial_id: t for t in trials}.values() if t.trial_id not in pruned_before]
        outcomes: dict[str, TrialOutcome] = {}
        pruned_now: dict[str, tuple[int, Optional[float]]] = {}
        if unique:
            order = SweepOrder(dataclasses.replace(self.plan, trials=tuple(unique)), self.endpoint, self.faults)
            outcomes, pruned_now = self._through_coordinator(order, unique, watch)
        name = self.plan.base_config.sweep.objective
        for tid, run in pruned_before.items():
            pruned_now[tid] = int(run.data.tags[PRUNED_TAG]), run.data.metrics.get(name)
        values: list[float | Exception] = []
        for trial, number in zip(trials, numbers):
            if trial.trial_id not in pruned_now:
                values.append(self._objective(trial, outcomes.get(trial.trial_id)))
                continue
            epoch, value = pruned_now[trial.trial_id]
            if number is not None and self.pruner is not None:
                self.pruner.mark_pruned(number, epoch)
            values.append(float(value) if value is not None else TrialFailed(f"trial {trial.trial_id}: pruned "
                                                                             f"without {name}"))
        return values

    def _pruned_runs(self) -> dict[str, Any]:
        """The sweep's runs its pruner stopped in an earlier batch or launch, by trial id."""
        runs = SweepTracker(self.endpoint, self.plan.base_config.tracking.experiment).trial_runs(self.plan.sweep_id)
        return {tid: run for tid, run in runs.items() if run.info.status == RunStatus.KILLED and PRUNED_TAG in run.data.tags}

    def _through_coordinator(self, order: Any, trials: list[Trial], watch: Optional["_PruningWatch"]
                             ) -> tuple[dict[str, TrialOutcome], dict[str, tuple[int, Optional[float]]]]:
        """The trials' outcomes, and the pruned ones' last reported epoch and objective (what the sweeper gets)."""
        import ray

        from orchestrator.coordinator import coordinator_actor

        ids = {t.trial_id for t in trials}
        for attempt in range(ATTEMPTS):
            coordinator = coordinator_actor(order, detached=False)
            try:
                ray.get(coordinator.submit.remote(trials, order.faults))
                while ids & set(ray.get(coordinator.trial_states.remote())):
                    if watch is not None:
                        watch.judge(coordinator)
                    time.sleep(POLL_S)
                progress = ray.get(coordinator.progress.remote())
                if watch is not None:
                    # A pruned trial's last report (the epoch it stopped at) came after the last look.
                    watch.judge(coordinator)
                pruned = {tid: watch.last_report(tid) for tid in progress.pruned if tid in ids} if watch else {}
                return {o.trial_id: o for o in progress.outcomes if o.trial_id in ids}, pruned
            except ray.exceptions.RayActorError:
                if attempt == ATTEMPTS - 1:
                    raise UserError(f"sweep {self.plan.sweep_id}: its coordinator went away (cancelled?)") from None
        return {}, {}

    def _objective(self, trial: Trial, outcome: Optional[TrialOutcome]) -> float | Exception:
        name = self.plan.base_config.sweep.objective
        if outcome is not None and outcome.state != RunStatus.FINISHED:
            return TrialFailed(f"trial {trial.trial_id} ended {outcome.state}: {outcome.error}")
        if outcome is not None and name in outcome.final_metrics:
            return float(outcome.final_metrics[name])
        # Finished in an earlier launch (or a spectrum job ended it): its run has the value.
        runs = SweepTracker(self.endpoint, self.plan.base_config.tracking.experiment).trial_runs(self.plan.sweep_id)
        run = runs.get(trial.trial_id)
        if run is None or run.info.status != RunStatus.FINISHED or name not in run.data.metrics:
            return TrialFailed(f"trial {trial.trial_id}: no {name} recorded")
        return float(run.data.metrics[name])


class _PruningWatch:
    """A batch's trials under the pruner: their reports read from the coordinator, written into their study trials,
    and the pruner's decisions sent back."""

    def __init__(self, pruner: StudyPruner, trials: Sequence[Trial], numbers: Sequence[Optional[int]]) -> None:
        self.pruner = pruner
        # A config asked for twice in one batch runs once, for both study trials.
        self.numbers: dict[str, list[int]] = {}
        for trial, number in zip(trials, numbers):
            if number is not None:
                self.numbers.setdefault(trial.trial_id, []).append(number)
        self.reports: dict[str, dict[int, Optional[float]]] = {}
        self.ordered: set[str] = set()

    def judge(self, coordinator: Any) -> None:
        import ray

        if not self.numbers:
            return
        self.reports.update(ray.get(coordinator.reports.remote(list(self.numbers))))
        for tid, objectives in self.reports.items():
            decided = [self.pruner.report(number, objectives) for number in self.numbers[tid]]
            epoch = next((e for e in decided if e is not None), None)
            if epoch is not None and tid not in self.ordered:
                ray.get(coordinator.prune.remote(tid, epoch))
                self.ordered.add(tid)

    def last_report(self, tid: str) -> tuple[int, Optional[float]]:
        """The last epoch a trial reported, and its objective then."""
        objectives = self.reports.get(tid, {})
        epoch = max(objectives, default=0)
        return epoch, objectives.get(epoch)
