"""A trial's exchanges with its owner (the sweep's coordinator): whether the trial is still its to run, and, once an
epoch is logged, the epoch's objective for a search's pruner.

A force-cancelled task can outlive its cancel by moments, and Ray may even start a retry of it; a coordinator can be
lost while its tasks run on. Either way, the task must stop without writing to its run: the run now belongs to
whoever resumes the sweep. A search's pruner may also decide that a trial is not worth its remaining epochs: the
trial then ends its run KILLED with the ``pruned`` tag and its task returns.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, Callable, Optional

# An owner busy for longer than this is given the benefit of the doubt: the trial goes on.
OWNER_ANSWER_S = 10.0
# The owner's answers to a trial's epoch report.
GO, STOP, PRUNE = "go", "stop", "prune"


class OwnerLost(Exception):
    """The trial's owner cancelled it or is gone: stop, and write nothing more to the run."""


class TrialPruned(Exception):
    """The search's pruner stopped the trial after ``epoch`` epochs, whose metrics were the last."""

    def __init__(self, epoch: int, metrics: dict[str, float]) -> None:
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch
        self.metrics = metrics


def check_owned(owner: Any, trial_id: str) -> None:
    """Raise :class:`OwnerLost` unless ``owner`` (an actor handle, or None outside Ray) still owns the trial."""
    if not _ask(owner, lambda: owner.owns.remote(trial_id), unanswered=True, gone=False):
        raise OwnerLost(trial_id)


def report_epoch(owner: Any, trial_id: str, epoch: int, objective: Optional[float]) -> bool:
    """Tell the owner an epoch's objective (one call per epoch, which is also the ownership check); raise
    :class:`OwnerLost` when the trial is no longer its; True when its search pruned it."""
    answer = _ask(owner, lambda: owner.report.remote(trial_id, epoch, objective), unanswered=GO, gone=STOP)
    if answer == STOP:
        raise OwnerLost(trial_id)
    return answer == PRUNE


def _ask(owner: Any, call: Callable[[], Any], unanswered: Any, gone: Any) -> Any:
    """The owner's answer; ``unanswered`` without an owner (outside Ray) or when it is too busy to answer in time,
    ``gone`` when it has exited."""
    if owner is None:
        return unanswered
    import ray

    try:
        return _waiter().submit(ray.get, call(), timeout=OWNER_ANSWER_S).result()
    except ray.exceptions.GetTimeoutError:
        return unanswered
    except ray.exceptions.RayActorError:
        return gone


@cache
def _waiter() -> ThreadPoolExecutor:
    """The thread a task waits for its owner's answers on. Ray lends a task's CPU to other tasks while the task's
    main thread blocks in ``ray.get``, and starts a new worker process to use it: a trial asking its owner
    between epochs let a third trial start on a 2-CPU machine, in a new worker that imported torch while two trials
    trained (14 s for a 0.3-s trial, measured). A wait on another thread keeps the trial's CPU its own."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="owner-answers")
