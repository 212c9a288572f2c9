"""A search's plan: what a grid's plan is before its points are known (trials come batch by batch from a Hydra
sweeper such as hydra-optuna-sweeper), and the overrides the `sweep` driver adds to the user's for Hydra's multirun.

The driver (orchestrator/search.py) and the launcher (hydra_plugins/curvature_sweeps) both build it from the user's
arguments, so they agree on the sweep id without any state shared between them.
"""

from __future__ import annotations

from typing import Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from orchestrator.composition import Composer, composer, to_trial_config
from orchestrator.errors import UserError
from orchestrator.grid import single_valued
from orchestrator.identity import sweep_id
from workers.trial_config import as_plain
from orchestrator.planning import SweepPlan
from orchestrator.validation import validate

SWEEPER_GROUP = "hydra/sweeper"
PRUNER_KEY = "sweep.pruner"
EXTRAS = {"optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna")}
# What the driver appends to the user's overrides, in this order (the launcher drops them again to find the user's).
DRIVER_KEYS = ("hydra.sweeper.n_trials", "hydra.sweeper.study_name", "hydra.sweeper.direction",
               "hydra.sweeper.storage", "hydra.sweep.dir", "hydra.launcher.store_uri", "hydra.sweeper.sampler.seed")


def sweeper_choice(arguments: Sequence[str]) -> Optional[str]:
    """The sweeper the command line picks (``hydra/sweeper=optuna``), or None for the grid. Where the command is
    routed is where a pruner meant for a search is refused on a grid, before anything is planned."""
    chosen = None
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if sep and key.lstrip("+~") == SWEEPER_GROUP:
            chosen = value
    if chosen in (None, "basic"):
        refuse_pruner_on_grid(arguments)
        return None
    return chosen


def refuse_pruner_on_grid(arguments: Sequence[str]) -> None:
    """A pruner stops a search's trials early on its sampler's behalf; a grid runs every point to its last epoch.
    The pruner may come from the command line (swept or not) or from a preset."""
    given = [a.partition("=")[2] for a in arguments if a.partition("=")[0].lstrip("+~") == PRUNER_KEY]
    pruner = next((value for value in given if value != "null"), None)
    if pruner is None:
        with composer() as compose:
            pruner = compose(single_valued(arguments)).sweep.pruner
    if pruner is not None:
        raise UserError(f"{PRUNER_KEY}={pruner}: a pruner stops the trials of a search (-m hydra/sweeper=optuna ...); "
                        "a grid runs every point to its last epoch; allowed here: null")


def require_extra(sweeper: str) -> None:
    """One line naming the extra to install when the sweeper's plugin is missing."""
    modules = EXTRAS.get(sweeper, ())
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        raise UserError(f'{SWEEPER_GROUP}={sweeper} needs the {sweeper} extra: '
                        f'pip install "curvature-sweeps[{sweeper}]"') from None


def plan_search(compose: Composer, arguments: Sequence[str]) -> SweepPlan:
    """The base config, validated, and the sweep id (the sweeper is part of it: a search never shares a grid's
    sweep); the trials are left to the sweeper."""
    fixed = single_valued(arguments)
    cfg = compose(fixed)
    choices = cfg.hydra.runtime.choices
    launcher = str(choices.get("hydra/launcher", "ray"))
    if launcher != "ray":
        raise UserError(f"hydra/launcher={launcher}: a search runs its trials through the sweep's coordinator on Ray; "
                        "leave hydra/launcher at its default (ray)")
    params = cfg.hydra.sweeper.get("params") if "params" in cfg.hydra.sweeper else None
    swept = {o.get_key_element() for o in OverridesParser.create().parse_overrides(list(arguments))
             if o.is_sweep_override()}
    swept |= set(OmegaConf.to_container(params) if params else {})
    base_config = to_trial_config(cfg)
    validate(base_config)
    keys = tuple(sorted(swept))
    sid = sweep_id(base_config.sweep.name, as_plain(base_config), [*keys, f"{SWEEPER_GROUP}={choices[SWEEPER_GROUP]}"])
    return SweepPlan(sid, tuple(arguments), True, tuple(fixed), keys, base_config, (), "ray")


def driver_overrides(plan: SweepPlan, n_trials: int, done: int, seed: Optional[int], storage_path: str,
                     sweep_dir: str, store_uri: Optional[str]) -> list[str]:
    """The study's name, storage, direction and remaining trials. A seeded sampler continuing a study is seeded
    with seed + trials done: re-created with its first seed it would propose its first trials again."""
    direction = "maximize" if plan.base_config.sweep.objective_mode == "max" else "minimize"
    values = (str(n_trials), plan.sweep_id, direction,
              f"{{_target_:orchestrator.study.open_storage,path:{_quoted(storage_path)}}}", _quoted(sweep_dir),
              _quoted(store_uri) if store_uri else "null", "null" if seed is None else str(seed + done))
    return [f"{key}={value}" for key, value in zip(DRIVER_KEYS, values)]


def user_arguments(hydra_overrides: Sequence[str], task_overrides: Sequence[str]) -> list[str]:
    """The user's arguments back from Hydra's record of the multirun's overrides."""
    user_hydra = list(hydra_overrides)[:-len(DRIVER_KEYS)]
    assert [o.partition("=")[0] for o in list(hydra_overrides)[-len(DRIVER_KEYS):]] == list(DRIVER_KEYS)
    return [*user_hydra, *task_overrides]


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
