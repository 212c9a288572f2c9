"""Asking a trial's owner (the sweep's coordinator) whether the trial is still its to run.

A force-cancelled task can outlive its cancel by moments, and Ray may even start a retry of it; a coordinator can be
lost while its tasks run on. Either way, the task must stop without writing to its run: the run now belongs to
whoever resumes the sweep.
"""

from __future__ import annotations

from typing import Any

# An owner busy for longer than this is given the benefit of the doubt: the trial goes on.
OWNER_ANSWER_S = 10.0


class OwnerLost(Exception):
    """The trial's owner cancelled it or is gone: stop, and write nothing more to the run."""


def check_owned(owner: Any, trial_id: str) -> None:
    """Raise :class:`OwnerLost` unless ``owner`` (an actor handle, or None outside Ray) still owns the trial."""
    if owner is None:
        return
    import ray

    try:
        owned = ray.get(owner.owns.remote(trial_id), timeout=OWNER_ANSWER_S)
    except ray.exceptions.GetTimeoutError:
        return
    except ray.exceptions.RayActorError:
        owned = False
    if not owned:
        raise OwnerLost(trial_id)
