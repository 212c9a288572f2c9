"""Where a search keeps its Optuna study (a SQLite file under the sweep's local store, so that re-running the same
command continues the same study after the driver is gone), and the pruner that judges its running trials.

The study never goes into the tracking database itself: Optuna and MLflow both version their schema in an
``alembic_version`` table, so they cannot share one database. Optuna 2.10 (what hydra-optuna-sweeper allows) predates
SQLAlchemy 2's end of implicit commits: its storage is opened in autocommit mode, which is safe here because the
sweep's one driver is the study's one writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from orchestrator.tracking import TrackingTarget
from workers.trial_config import SweepMetaConfig


def study_path(target: TrackingTarget, sweep_id: str) -> Path:
    return target.local_dir.absolute() / "studies" / f"{sweep_id}.db"


def open_storage(path: str) -> Any:
    """The study's storage (Hydra instantiates it from ``hydra.sweeper.storage``)."""
    import optuna

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"isolation_level": "AUTOCOMMIT"})


def completed_trials(path: Path, study_name: str) -> int:
    """How many trials of the study have a value (0 without a study yet)."""
    if not path.exists():
        return 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(str(path)))
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


# A study trial the pruner stopped: the epoch its trial stopped at. The sweeper tells it COMPLETE (with its last
# reported objective), so this attribute is what keeps it out of the completed trials the pruner compares with.
PRUNED_ATTR = "pruned"


class StudyPruner:
    """The median pruner over a search's running trials: each epoch's objective, as its trial reports it, becomes an
    intermediate value of the study trial the sweeper asked for it, and optuna's MedianPruner judges the trial
    against the search's earlier completed trials at the same epoch (the study's steps are epochs, from 1).

    Pruned trials are judged as optuna judges them: the sweeper can only tell a trial COMPLETE or FAIL, so a pruned
    one carries :data:`PRUNED_ATTR`, and the pruner sees the study without them (neither startup trials nor part of
    any median), as it would had they been told PRUNED.
    """

    def __init__(self, path: str, study_name: str, sweep: SweepMetaConfig) -> None:
        import optuna

        self.storage = open_storage(path)
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.direction = self.storage.get_study_directions(self.study_id)[0]
        # optuna judges steps >= n_warmup_steps; our steps are epochs from 1, so the first warm-up epochs are skipped.
        self.pruner = optuna.pruners.MedianPruner(n_startup_trials=int(sweep.pruner_startup_trials),
                                                  n_warmup_steps=int(sweep.pruner_warmup_epochs) + 1)
        self.judged_against: list[Any] = []
        self.written: dict[int, set[int]] = {}

    def batch_trials(self, job_overrides: Sequence[Sequence[str]]) -> list[Optional[int]]:
        """The study's trial numbers of the batch the sweeper just asked for, in the jobs' order: its newest trials,
        each RUNNING with the params its job's overrides name (None for a job without one)."""
        from optuna.trial import TrialState

        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        self.judged_against = [t for t in trials if PRUNED_ATTR not in t.user_attrs]
        newest = sorted(trials, key=lambda t: t.number)[-len(job_overrides):] if job_overrides else []
        numbers: list[Optional[int]] = []
        for overrides, trial in zip(job_overrides, [None] * (len(job_overrides) - len(newest)) + newest):
            matches = trial is not None and trial.state == TrialState.RUNNING and all(
                f"{name}={value}" in overrides for name, value in trial.params.items())
            numbers.append(trial.number if matches else None)
        return numbers

    def report(self, number: int, objectives: Mapping[int, Optional[float]]) -> Optional[int]:
        """Write a trial's newly reported epochs into the study, judging it after each: the epoch it is pruned on,
        or None."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        written = self.written.setdefault(number, set())
        new = sorted(epoch for epoch, value in objectives.items() if epoch not in written and value is not None)
        if not new:
            return None
        trial = self.storage.get_trial(trial_id)
        decided = None
        for epoch in new:
            self.storage.set_trial_intermediate_value(trial_id, epoch, float(objectives[epoch]))
            written.add(epoch)
            trial.intermediate_values = {**trial.intermediate_values, epoch: float(objectives[epoch])}
            if decided is None and self.pruner.prune(_StudyView(self.judged_against, self.direction), trial):
                decided = epoch
        return decided

    def mark_pruned(self, number: int, epoch: int) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.set_trial_user_attr(trial_id, PRUNED_ATTR, epoch)


class _StudyView:
    """What optuna's MedianPruner reads of a study (its trials and direction), less the pruned trials."""

    def __init__(self, trials: list[Any], direction: Any) -> None:
        self.trials = trials
        self.direction = direction

    def get_trials(self, deepcopy: bool = True, states: Optional[tuple[Any, ...]] = None) -> list[Any]:
        return [t for t in self.trials if states is None or t.state in states]
