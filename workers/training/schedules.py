"""Learning-rate schedules: a pure function of the epoch, applied at the start of each epoch.

The paper's two schedules (appendix C.2) share one shape: the initial rate a0 while t/H <= 0.5, a linear decay
to ``a0 * end_ratio`` over 0.5 < t/H <= 0.9, and that end rate afterwards.

- eq. 21 (``swa_linear``, no iterate averaging): H = T, the epoch budget; end_ratio = r (0.01).
- eq. 22 (``ia_linear``, with iterate averaging): H = T_avg, the epoch at which averaging starts;
  end_ratio = a_avg / a0 (0.5). The appendix prints ``t/T`` inside eq. 22's middle branch while its
  conditions read ``t/T_avg``; we use T_avg throughout, which is the only reading that is continuous.

``t`` is the 0-based index of the epoch about to run, i.e. the number of epochs already completed. The paper
takes the schedule from Izmailov et al. (2018), whose code evaluates it exactly so, and it is what the trainer
passes to ``Recipe.set_epoch``: the first epoch runs at a0, and with T = 300 the rate reaches a0 * r at
t/T = 0.9 (the epoch with index 270) and stays there through the last epoch (index 299).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from workers.trial_config import IALinearConfig, PaperScheduleConfig, ScheduleConfig, SWALinearConfig
from workers.training.rules import Rule, apply_rules, require_known

Schedule = Callable[[int], float]


def linear_decay(lr0: float, horizon: int, end_ratio: float) -> Schedule:
    """a0 until t/H = 0.5, linear to a0 * end_ratio at t/H = 0.9, constant after (eqs. 21 and 22).

    The breakpoints are compared in integers (2t <= H, 10t <= 9H) and the decay fraction (t/H - 0.5) / 0.4 is
    computed as (10t - 5H) / (4H), so t/H = 0.5 and 0.9 land exactly on their branch and the end rate is exact.
    """

    def rate(t: int) -> float:
        if horizon == 0:
            return lr0 * end_ratio
        if 2 * t <= horizon:
            return lr0
        if 10 * t <= 9 * horizon:
            return lr0 * (1 - (1 - end_ratio) * (10 * t - 5 * horizon) / (4 * horizon))
        return lr0 * end_ratio

    return rate


def _constant(cfg: ScheduleConfig, lr0: float, total_epochs: int, avg_start_epoch: Optional[int]) -> Schedule:
    return lambda epoch: lr0


def _swa_linear(cfg: ScheduleConfig, lr0: float, total_epochs: int, avg_start_epoch: Optional[int]) -> Schedule:
    return linear_decay(lr0, total_epochs, cfg.final_ratio)


def _ia_linear(cfg: ScheduleConfig, lr0: float, total_epochs: int, avg_start_epoch: Optional[int]) -> Schedule:
    if avg_start_epoch is None:
        raise ValueError("schedule=ia_linear needs iterate averaging: use optimizer=gadam, gadamx or swa")
    return linear_decay(lr0, avg_start_epoch, cfg.avg_ratio)


def _paper(cfg: ScheduleConfig, lr0: float, total_epochs: int, avg_start_epoch: Optional[int]) -> Schedule:
    if avg_start_epoch is None:
        return _swa_linear(cfg, lr0, total_epochs, None)
    return _ia_linear(cfg, lr0, total_epochs, avg_start_epoch)


@dataclass(frozen=True)
class ScheduleKind:
    """Everything about one ``schedule=`` option besides its YAML in ``orchestrator/conf/schedule/``."""

    # Its keys and their types: the schema its YAML option extends (``_<name>_schema``).
    config: type[ScheduleConfig]
    build: Callable[[ScheduleConfig, float, int, Optional[int]], Schedule]
    rules: tuple[Rule, ...]
    # Its horizon is T_avg, the epoch iterate averaging starts: an optimizer without averaging cannot use it.
    needs_averaging: bool = False


_RATIO = (lambda v: 0 < v <= 1, "a number in (0, 1]")
SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind(ScheduleConfig, _constant, ()),
    "swa_linear": ScheduleKind(SWALinearConfig, _swa_linear, (("final_ratio", *_RATIO),)),
    "ia_linear": ScheduleKind(IALinearConfig, _ia_linear, (("avg_ratio", *_RATIO),), needs_averaging=True),
    "paper": ScheduleKind(PaperScheduleConfig, _paper, (("final_ratio", *_RATIO), ("avg_ratio", *_RATIO))),
}


def check_schedule(cfg: ScheduleConfig) -> None:
    require_known("schedule", cfg.name, SCHEDULES)
    apply_rules("schedule", cfg, SCHEDULES[cfg.name].rules)


def build_schedule(cfg: ScheduleConfig, lr0: float, total_epochs: int, *, avg_start_epoch: Optional[int] = None) -> Schedule:
    """The learning rate for epoch ``t`` (0-based), given the initial rate and the epoch budget.

    ``avg_start_epoch`` is T_avg when the optimizer averages iterates (the Recipe passes it), else None.
    """
    check_schedule(cfg)
    return SCHEDULES[cfg.name].build(cfg, lr0, total_epochs, avg_start_epoch)
