"""Every check on a composed grid point, before anything is launched or recorded: one line naming the key, the
value and what is allowed.

What a trial computes and how its worker runs is checked by the rules the workers themselves apply
(:mod:`workers.config_rules`, which imports no torch); here only what the control plane alone reads: the
cluster's resources, the tracking store and its directory, the sweep's name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from orchestrator.errors import UserError
from orchestrator.tracking import resolve_target
from workers.config_rules import Rule, check_config, check_fits, check_keys
from workers.trial_config import TrackingConfig, TrialConfig

# Runs are found by MLflow searches such as tags.sweep_id = '<name>', whose syntax has no escape for a quote;
# 250 characters is MLflow's limit on a run name.
SWEEP_NAME_LIMIT = 250
# The per-epoch metrics a trial logs (workers/training/trial.py) that a search can optimise; *_avg need averaging.
OBJECTIVES = ("test_acc", "test_loss", "train_acc", "train_loss", "test_acc_avg", "test_loss_avg", "train_acc_avg",
              "train_loss_avg")

CHECKS: tuple[Rule, ...] = (
    ("cluster.num_cpus", lambda v: v > 0, "a number > 0"),
    ("cluster.num_gpus", lambda v: v >= 0, "a number >= 0"),
    ("cluster.max_retries", lambda v: v >= 0, "an integer >= 0"),
    ("cluster.local_num_cpus", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("tracking.heartbeat_interval", lambda v: v > 0, "a number of seconds > 0"),
    ("tracking.outage_timeout", lambda v: v >= 0, "a number of seconds >= 0"),
    ("tracking.experiment", lambda v: bool(str(v).strip()), "a non-empty name"),
    ("sweep.objective", lambda v: v in OBJECTIVES, "one of " + ", ".join(OBJECTIVES)),
    ("sweep.objective_mode", lambda v: v in ("max", "min"), "max or min"),
)


def validate(config: TrialConfig) -> None:
    """Raise a one-line ``UserError`` naming the first bad key of a config, its value and what is allowed."""
    try:
        check_keys(config, CHECKS)
        check_config(config)
    except ValueError as error:
        raise UserError(str(error)) from None
    check_sweep_name(config.sweep.name)
    check_local_dir(config.tracking)


def validate_trial(config: TrialConfig) -> None:
    """:func:`validate`, and how the groups of a grid point's trial config fit together: the model its dataset,
    the spectrum job its device and its data shards."""
    validate(config)
    try:
        check_fits(config)
    except ValueError as error:
        raise UserError(str(error)) from None


def check_sweep_name(name: Optional[str], key: str = "sweep.name") -> None:
    if name is None:
        return
    if "'" in name or not name.isprintable() or name != name.strip() or len(name) > SWEEP_NAME_LIMIT:
        raise UserError(f"{key}={name}: must be at most {SWEEP_NAME_LIMIT} printable characters without ' (MLflow's "
                        "run search quotes the name) and without leading or trailing spaces")


def check_local_dir(tracking: TrackingConfig) -> None:
    """The local store (no tracking URI given) lives in ``tracking.local_dir``: this user must be able to create
    and write it. Probed with a directory made and removed at once: root passes every permission check but not a
    read-only or virtual file system."""
    if not resolve_target(tracking).is_local:
        return
    path = Path(os.path.expanduser(tracking.local_dir)).absolute()
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".sweep-write-check-", dir=existing))
            return
        except OSError as error:
            problem = f"cannot write in {existing} ({error.strerror})"
    raise UserError(f"tracking.local_dir={tracking.local_dir}: {problem}; allowed: a directory this user can "
                    "create and write")
