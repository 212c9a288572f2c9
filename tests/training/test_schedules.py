"""Eqs. 21 and 22 against values computed by hand at and between their breakpoints."""

from __future__ import annotations

import pytest
import torch

from workers.training.recipe import Recipe
from config_groups import group_options
from workers.trial_config import IALinearConfig, PaperScheduleConfig, SWALinearConfig
from workers.training.schedules import SCHEDULES, build_schedule

A0 = 0.1


def swa_linear(total_epochs: int, final_ratio: float = 0.01):
    return build_schedule(SWALinearConfig(final_ratio=final_ratio), A0, total_epochs)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 0.1),  # t/T = 0
        (24, 0.1),  # 0.48
        (25, 0.1),  # 0.5: still a0
        (26, 0.1 * (1 - 0.99 * 0.02 / 0.4)),  # 0.52: 0.09505
        (35, 0.0505),  # 0.7: halfway, a0 * (1 - 0.99 / 2)
        (44, 0.1 * (1 - 0.99 * 0.38 / 0.4)),  # 0.88: 0.00595
        (45, 0.001),  # 0.9: a0 * r
        (46, 0.001),
        (49, 0.001),  # the last epoch
    ],
)
def test_eq21_with_T_50(t: int, expected: float) -> None:
    assert swa_linear(50)(t) == pytest.approx(expected, rel=1e-12)


def test_eq21_with_T_300_and_another_ratio() -> None:
    schedule = swa_linear(300, final_ratio=0.05)
    assert schedule(150) == pytest.approx(0.1)
    assert schedule(151) == pytest.approx(0.1 * (1 - 0.95 * (151 / 300 - 0.5) / 0.4), rel=1e-12)
    assert schedule(210) == pytest.approx(0.1 * (1 - 0.95 * 0.5), rel=1e-12)
    assert schedule(270) == pytest.approx(0.005, rel=1e-12)
    assert schedule(299) == pytest.approx(0.005, rel=1e-12)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 0.1),
        (10, 0.1),  # t/T_avg = 0.5
        (11, 0.1 * (1 - 0.5 * 0.05 / 0.4)),  # 0.55: 0.09375
        (14, 0.075),  # 0.7: a0 * (1 - 0.5 / 2)
        (18, 0.05),  # 0.9: a_avg
        (19, 0.05),
        (20, 0.05),  # T_avg: averaging runs at a_avg
        (39, 0.05),
    ],
)
def test_eq22_with_T_avg_20(t: int, expected: float) -> None:
    schedule = build_schedule(IALinearConfig(avg_ratio=0.5), A0, 40, avg_start_epoch=20)
    assert schedule(t) == pytest.approx(expected, rel=1e-12)


def test_eq22_uses_T_avg_not_T() -> None:
    # With T = 300 and T_avg = 161 the decay ends at t = 0.9 * 161 = 144.9, long before 0.9 * T = 270.
    schedule = build_schedule(IALinearConfig(avg_ratio=0.5), A0, 300, avg_start_epoch=161)
    assert schedule(80) == pytest.approx(0.1)
    assert schedule(144) == pytest.approx(0.1 * (1 - 0.5 * (144 / 161 - 0.5) / 0.4), rel=1e-12)
    assert schedule(145) == pytest.approx(0.05)


def test_paper_schedule_picks_the_equation_by_averaging() -> None:
    cfg = PaperScheduleConfig(final_ratio=0.01, avg_ratio=0.5)
    assert build_schedule(cfg, A0, 50)(45) == pytest.approx(0.001)
    assert build_schedule(cfg, A0, 50, avg_start_epoch=20)(18) == pytest.approx(0.05)


def test_ia_linear_needs_averaging(trial_cfg) -> None:
    with pytest.raises(ValueError, match="schedule=ia_linear needs iterate averaging"):
        Recipe(trial_cfg("optimizer=sgd", "schedule=ia_linear"), torch.nn.Linear(2, 2), 1)


def test_bad_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match=r"schedule.final_ratio=0: must be a number in \(0, 1\]"):
        swa_linear(50, final_ratio=0)


def test_recipe_applies_the_schedule_to_every_group_with_0_based_epochs(trial_cfg) -> None:
    cfg = trial_cfg("optimizer=gadam", "optimizer.lr=0.1", "optimizer.averaging.start_epoch=20", "schedule=paper",
                    "trainer.epochs=40")
    recipe = Recipe(cfg, torch.nn.Linear(2, 2), 1)
    recipe.optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    assert recipe.set_epoch(0) == pytest.approx(0.1)
    assert recipe.set_epoch(14) == pytest.approx(0.075)
    assert [g["lr"] for g in recipe.optimizer.param_groups] == pytest.approx([0.075, 0.075])


def test_every_schedule_option_has_one_registry_entry() -> None:
    assert group_options("schedule") == set(SCHEDULES)
