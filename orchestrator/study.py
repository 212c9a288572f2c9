"""Where a search keeps its Optuna study: a SQLite file under the sweep's local store, so that re-running the same
command continues the same study after the driver is gone.

The study never goes into the tracking database itself: Optuna and MLflow both version their schema in an
``alembic_version`` table, so they cannot share one database. Optuna 2.10 (what hydra-optuna-sweeper allows) predates
SQLAlchemy 2's end of implicit commits: its storage is opened in autocommit mode, which is safe here because the
sweep's one driver is the study's one writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.tracking import TrackingTarget


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
