"""The names that the writers and the readers of a sweep's MLflow runs share, each spelled here and nowhere else.

A run is written in one plane (the control plane creates it, a worker trains in it) and read in the other (``sweep
status``, ``sweep resume``, the search, the guard): a tag, a run kind or a state spelled twice can drift apart
silently, and a reader then finds nothing. Two vocabularies of state are kept apart on purpose: :class:`RunStatus`
is what MLflow stores for a run, :class:`TrialState` is what ``sweep status`` tells a user (it adds what only the
sweep's owner or a run's heartbeat can tell: queued, stale, pruned). Both are ``StrEnum``: a member is the very
string MLflow stores or the table prints. Artifact paths have their own module, ``workers.artifacts``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status as MLflow stores it, plus one of ours that never reaches MLflow (``TRAINED``)."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    # A trial whose training is done and whose spectrum job is still to run: its run stays RUNNING in MLflow.
    TRAINED = "TRAINED"


# The statuses after which a run changes no more (MLflow stamps their end time).
TERMINAL = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})
# The statuses of a run some owner holds: what a dead owner's guard ends KILLED.
HELD = frozenset({RunStatus.RUNNING, RunStatus.SCHEDULED})


class TrialState(StrEnum):
    """A trial's state as ``sweep status`` and the end-of-sweep summary show it."""

    FINISHED = "finished"
    RUNNING = "running"
    FAILED = "failed"
    KILLED = "killed"
    # RUNNING in MLflow, but no owner holds it and its heartbeat stopped: `sweep resume` takes it.
    STALE = "stale"
    PENDING = "pending"
    QUEUED = "queued"
    # Stopped by its search's pruner: done, not failed.
    PRUNED = "pruned"


# Run kinds (tag KIND_TAG): a sweep's parent run and its trials' child runs.
PARENT_KIND, TRIAL_KIND = "sweep", "trial"

# Tags every run of a sweep carries: which sweep, which trial (the identity of its config), which kind, and the
# trial's overrides (a JSON list).
SWEEP_TAG, TRIAL_TAG, KIND_TAG, OVERRIDES_TAG = "sweep_id", "trial_id", "kind", "overrides"
# A trial's progress, written by its worker: the last epoch logged, the last epoch checkpointed, how many attempts
# have started, and the one-line reason of a failure.
EPOCH_TAG, CHECKPOINT_EPOCH_TAG, ATTEMPT_TAG, ERROR_TAG = "epoch", "checkpoint_epoch", "attempts", "error"
# Its liveness: the time of the last beat, and the seconds between beats of the current attempt (readers judge
# staleness by the run's own interval, not by theirs).
HEARTBEAT_TAG, HEARTBEAT_INTERVAL_TAG = "heartbeat", "heartbeat_interval"
# Where a resumed attempt started: the checkpoint's epoch, and the epochs the lost attempt had logged past it.
RESUMED_FROM_TAG, RECOMPUTED_TAG = "resumed_from_epoch", "recomputed_epochs"
# Where the current attempt runs: the Ray node's address and id; the worker process.
NODE_TAG, NODE_ID_TAG, WORKER_PID_TAG = "node", "node_id", "worker_pid"
# The Ray node ids of a sharded spectrum job's workers, by rank.
SPECTRUM_NODES_TAG = "spectrum_nodes"
# Set on a run its search pruned: the epoch it stopped at (the run ends KILLED, not FAILED).
PRUNED_TAG = "pruned"
# On a search's parent run: the best trial so far and its run.
BEST_TRIAL_TAG, BEST_RUN_TAG = "best_trial", "best_run_id"
