"""One batch of a Hydra sweeper's jobs, run as trials of the sweep: each job composed, validated and identified as a
grid point is, the batch handed to the sweep's coordinator (the grid's execution), and each job's return value the
trial's objective (``sweep.objective`` of its last epoch). The Hydra launcher plugin
(hydra_plugins/curvature_sweeps) is a shim over this.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

from orchestrator.composition import Composer, to_container
from orchestrator.errors import UserError
from orchestrator.identity import trial_id
from orchestrator.planning import SweepPlan, Trial
from orchestrator.search_plan import plan_search, user_arguments
from orchestrator.tracking import SweepTracker, resolve_target
from orchestrator.validation import validate_trial
from workers.spec import FINISHED, TrialOutcome
from workers.tracking_endpoint import TrackingEndpoint

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

    @classmethod
    def from_hydra(cls, config: DictConfig, store_uri: Optional[str]) -> "BatchRunner":
        """Everything from the multirun's own config: the user's arguments, and the local store's server if the
        driver started one."""
        from orchestrator.commands import FAULTS_ENV

        arguments = user_arguments(list(config.hydra.overrides.hydra), list(config.hydra.overrides.task))
        plan = plan_search(Composer(), arguments)
        target = resolve_target(plan.settings["tracking"])
        endpoint = TrackingEndpoint(store_uri) if store_uri else target.endpoint
        return cls(plan, endpoint, json.loads(os.environ.get(FAULTS_ENV, "{}")))

    def trials(self, job_overrides: Sequence[Sequence[str]]) -> list[Trial]:
        compose = Composer()
        trials = []
        for overrides in job_overrides:
            config = to_container(compose.point(list(overrides)))
            validate_trial(config)
            chosen = tuple(o for o in overrides if o.partition("=")[0].lstrip("+~") in self.plan.swept_keys)
            trials.append(Trial(trial_id(config), chosen or tuple(overrides), config))
        return trials

    def run(self, trials: list[Trial]) -> list[float | Exception]:
        """Each trial's objective, or why it has none; trials the sweep finished before are not run again."""
        from orchestrator.sweep_book import SweepOrder

        unique = list({t.trial_id: t for t in trials}.values())
        order = SweepOrder(dataclasses.replace(self.plan, trials=tuple(unique)), self.endpoint, self.faults)
        outcomes = self._through_coordinator(order, unique)
        return [self._objective(t, outcomes.get(t.trial_id)) for t in trials]

    def _through_coordinator(self, order: Any, trials: list[Trial]) -> dict[str, TrialOutcome]:
        import ray

        from orchestrator.coordinator import coordinator_actor

        ids = {t.trial_id for t in trials}
        for attempt in range(ATTEMPTS):
            coordinator = coordinator_actor(order, detached=False)
            try:
                ray.get(coordinator.submit.remote(trials))
                while ids & set(ray.get(coordinator.trial_states.remote())):
                    time.sleep(POLL_S)
                progress = ray.get(coordinator.progress.remote())
                return {o.trial_id: o for o in progress.outcomes if o.trial_id in ids}
            except ray.exceptions.RayActorError:
                if attempt == ATTEMPTS - 1:
                    raise UserError(f"sweep {self.plan.sweep_id}: its coordinator went away (cancelled?)") from None
        return {}

    def _objective(self, trial: Trial, outcome: Optional[TrialOutcome]) -> float | Exception:
        name = self.plan.base_config["sweep"]["objective"]
        if outcome is not None and outcome.state != FINISHED:
            return TrialFailed(f"trial {trial.trial_id} ended {outcome.state}: {outcome.error}")
        if outcome is not None and name in outcome.final_metrics:
            return float(outcome.final_metrics[name])
        # Finished in an earlier launch (or a spectrum job ended it): its run has the value.
        runs = SweepTracker(self.endpoint, self.plan.settings["tracking"]["experiment"]).trial_runs(self.plan.sweep_id)
        run = runs.get(trial.trial_id)
        if run is None or run.info.status != FINISHED or name not in run.data.metrics:
            return TrialFailed(f"trial {trial.trial_id}: no {name} recorded")
        return float(run.data.metrics[name])
