"""The Hydra launcher of ``sweep run -m hydra/sweeper=optuna ...``: any Hydra sweeper's batches run as the sweep's
trials, through the sweep's coordinator on Ray (orchestrator/search_batch.py does the work)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class CurvatureLauncher(Launcher):
    def __init__(self, store_uri: Optional[str] = None) -> None:
        # The local store's server when the `sweep` driver started one (it lives as long as the driver).
        self.store_uri = store_uri
        self.config: Optional[DictConfig] = None
        self.runner: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from pathlib import Path

        from orchestrator.search_batch import BatchRunner

        assert self.config is not None
        if self.runner is None:
            self.runner = BatchRunner.from_hydra(self.config, self.store_uri)
            # The sweeper writes its results there.
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        trials = self.runner.trials(job_overrides)
        returns = []
        for overrides, value in zip(job_overrides, self.runner.run(trials)):
            failed = isinstance(value, Exception)
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.FAILED if failed else JobStatus.COMPLETED,
                                     _return_value=value, task_name="sweep"))
        return returns
