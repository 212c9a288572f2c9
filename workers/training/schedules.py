"""Learning-rate schedules: a pure function of the epoch, applied at the start of each epoch."""

from __future__ import annotations

from typing import Callable, Mapping

Schedule = Callable[[int], float]


def _constant(cfg: Mapping, lr0: float, total_epochs: int) -> Schedule:
    return lambda epoch: lr0


BUILDERS: dict[str, Callable[[Mapping, float, int], Schedule]] = {
    "constant": _constant,
}


def build_schedule(cfg: Mapping, lr0: float, total_epochs: int) -> Schedule:
    """The learning rate for epoch ``t`` (0-based), given the initial rate and the epoch budget."""
    name = cfg["name"]
    if name not in BUILDERS:
        raise ValueError(f"schedule.name={name!r} is not known; allowed: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](cfg, lr0, total_epochs)
