"""Grid expansion with Hydra's own override grammar and sweeper semantics."""

from __future__ import annotations

import pytest

from orchestrator.errors import UserError
from orchestrator.grid import expand_grid
from orchestrator.planning import plan_sweep


def test_comma_lists_make_the_cartesian_product() -> None:
    grid = expand_grid(["optimizer=sgd,adam", "optimizer.lr=0.01,0.1", "trainer.epochs=3"], {}, multirun=True)
    assert grid.swept_keys == ("optimizer", "optimizer.lr")
    assert grid.base_overrides == ("trainer.epochs=3",)
    assert len(grid.points) == 4
    assert ("optimizer=adam", "optimizer.lr=0.1", "trainer.epochs=3") in grid.points


def test_range_and_choice() -> None:
    grid = expand_grid(["trainer.seed=range(0,3)", "optimizer.lr=choice(0.1,0.2)"], {}, multirun=True)
    assert len(grid.points) == 6
    assert {p[0] for p in grid.points} == {"trainer.seed=0", "trainer.seed=1", "trainer.seed=2"}


def test_yaml_sweeper_params_are_overridden_by_the_command_line() -> None:
    params = {"optimizer.lr": "0.01,0.1", "optimizer.weight_decay": "0,1e-4"}
    assert len(expand_grid([], params, multirun=True).points) == 4
    grid = expand_grid(["optimizer.lr=0.5"], params, multirun=True)
    assert grid.swept_keys == ("optimizer.weight_decay",)
    assert all("optimizer.lr=0.5" in p for p in grid.points)


def test_sweeper_params_from_a_preset() -> None:
    plan = plan_sweep(["+experiment=quickstart"], multirun=True)
    assert len(plan.trials) == 4
    assert {t.config.optimizer.name for t in plan.trials} == {"sgd", "adam"}


def test_several_values_need_multirun() -> None:
    with pytest.raises(UserError, match="optimizer.lr=0.1,0.2: several values need --multirun"):
        expand_grid(["optimizer.lr=0.1,0.2"], {}, multirun=False)


def test_interval_is_not_a_grid() -> None:
    with pytest.raises(UserError, match=r"optimizer.lr=interval\(0,1\): not a grid"):
        expand_grid(["optimizer.lr=interval(0,1)"], {}, multirun=True)
