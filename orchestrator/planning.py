"""From a command line to a validated plan: every trial composed, checked and identified before any launch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from omegaconf import OmegaConf

from orchestrator.composition import composer, to_trial_config
from orchestrator.errors import UserError
from orchestrator.grid import expand_grid, single_valued
from orchestrator.identity import sweep_id, trial_id
from orchestrator.validation import validate, validate_trial
from workers.trial_config import TrialConfig, as_plain


@dataclass(frozen=True)
class Trial:
    trial_id: str
    # The grid point's own overrides, as the sweeper generated them.
    overrides: tuple[str, ...]
    config: TrialConfig


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    arguments: tuple[str, ...]
    multirun: bool
    base_overrides: tuple[str, ...]
    swept_keys: tuple[str, ...]
    # The composition of the fixed arguments alone: its cluster and tracking groups are every trial's.
    base_config: TrialConfig
    trials: tuple[Trial, ...]
    # Which Hydra launcher runs the trials: "ray" (default) or "basic" (sequential, in-process).
    launcher: str


def plan_sweep(arguments: Sequence[str], multirun: bool) -> SweepPlan:
    with composer() as compose:
        params_node = compose(single_valued(arguments)).hydra.sweeper.params
        params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
        grid = expand_grid(arguments, params, multirun)
        base_cfg = compose(grid.base_overrides)
        launcher = str(base_cfg.hydra.runtime.choices.get("hydra/launcher", "ray"))
        base_config = to_trial_config(base_cfg)
        trials: dict[str, Trial] = {}
        for point in grid.points:
            config = to_trial_config(compose.point(point))
            validate_trial(config)
            tid = trial_id(as_plain(config))
            if tid in trials:
                raise UserError(f"grid points {' '.join(trials[tid].overrides)} and {' '.join(point)} are the same trial")
            trials[tid] = Trial(tid, tuple(point), config)
    validate(base_config)
    if any(t.config.cluster != base_config.cluster or t.config.tracking != base_config.tracking
           for t in trials.values()):
        raise UserError("cluster.* and tracking.* cannot be swept: every trial of a sweep runs on one cluster and store")
    name = base_config.sweep.name
    return SweepPlan(sweep_id(name, as_plain(base_config), grid.swept_keys), tuple(arguments), multirun, grid.base_overrides,
                     grid.swept_keys, base_config, tuple(trials.values()), launcher)
