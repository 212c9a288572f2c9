"""``hydra/launcher=ray``: every grid point of a multirun becomes a Ray task (see orchestrator.ray_launcher)."""

from __future__ import annotations

from typing import Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from orchestrator.composition import to_container
from orchestrator.ray_launcher import run_on_ray
from orchestrator.session import active


class RayTrialLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.hydra_context is not None and self.config is not None
        session = active()
        trials = [session.trial_for_overrides(o, self._compose) for o in job_overrides]
        outcomes = run_on_ray(session, [t for t in trials if t.trial_id not in session.skipped])
        returns = []
        for overrides, trial in zip(job_overrides, trials):
            outcome = outcomes.get(trial.trial_id)
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                                     _return_value=outcome.state if outcome else "SKIPPED"))
        return returns

    def _compose(self, overrides: Sequence[str]) -> dict:
        assert self.hydra_context is not None and self.config is not None
        return to_container(self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides)))
