"""From a command line to a validated plan: every trial composed, checked and identified before any launch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from omegaconf import OmegaConf

from orchestrator.composition import composer, to_container
from orchestrator.errors import UserError
from orchestrator.grid import expand_grid, single_valued
from orchestrator.identity import sweep_id, trial_id
from orchestrator.validation import validate, validate_trial


@dataclass(frozen=True)
class Trial:
    trial_id: str
    # The grid point's own overrides, as the sweeper generated them.
    overrides: tuple[str, ...]
    config: dict[str, Any]


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    arguments: tuple[str, ...]
    multirun: bool
    base_overrides: tuple[str, ...]
    swept_keys: tuple[str, ...]
    base_config: dict[str, Any]
    trials: tuple[Trial, ...]
    # Which Hydra launcher runs the trials: "ray" (default) or "basic" (sequential, in-process).
    launcher: str

    @property
    def settings(self) -> dict[str, Any]:
        """Where-to-run settings; the same for every trial of a sweep."""
        return {key: self.base_config[key] for key in ("cluster", "tracking")}


def plan_sweep(arguments: Sequence[str], multirun: bool) -> SweepPlan:
    with composer() as compose:
        params_node = compose(single_valued(arguments)).hydra.sweeper.params
        params = OmegaConf.to_container(params_node, resolve=True) if params_node else {}
        grid = expand_grid(arguments, params, multirun)
        base_cfg = compose(grid.base_overrides)
        launcher = str(base_cfg.hydra.runtime.choices.get("hydra/launcher", "ray"))
        base_config = to_container(base_cfg)
        trials: dict[str, Trial] = {}
        for point in grid.points:
            config = to_container(compose.point(point))
            validate_trial(config)
            tid = trial_id(config)
            if tid in trials:
                raise UserError(f"grid points {' '.join(trials[tid].overrides)} and {' '.join(point)} are the same trial")
            trials[tid] = Trial(tid, tuple(point), config)
    validate(base_config)
    if any(t.config["cluster"] != base_config["cluster"] or t.config["tracking"] != base_config["tracking"]
           for t in trials.values()):
        raise UserError("cluster.* and tracking.* cannot be swept: every trial of a sweep runs on one cluster and store")
    name = base_config["sweep"]["name"]
    return SweepPlan(sweep_id(name, base_config, grid.swept_keys), tuple(arguments), multirun, grid.base_overrides,
                     grid.swept_keys, base_config, tuple(trials.values()), launcher)
