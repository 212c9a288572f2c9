"""Expand command-line overrides into grid points with Hydra's own sweeper logic and override grammar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from orchestrator.errors import UserError


@dataclass(frozen=True)
class Grid:
    # Overrides common to every grid point, and the keys that take several values.
    base_overrides: tuple[str, ...]
    swept_keys: tuple[str, ...]
    points: tuple[tuple[str, ...], ...]


def _parse(overrides: Sequence[str]) -> list:
    parser = OverridesParser.create()
    parsed = []
    for override in overrides:
        try:
            parsed += parser.parse_overrides([override])
        except HydraException as error:
            raise UserError(f"{override}: {str(error).strip().splitlines()[0]}") from None
    return parsed


def single_valued(arguments: Sequence[str]) -> list[str]:
    """The overrides that set one value: enough to compose the config that holds ``hydra.sweeper.params``."""
    return [o.input_line for o in _parse(arguments) if not o.is_sweep_override()]


def expand_grid(arguments: Sequence[str], sweeper_params: Mapping[str, str], multirun: bool) -> Grid:
    """Grid points as BasicSweeper makes them: ``hydra.sweeper.params`` first, then the command line."""
    combined = [f"{key}={value}" for key, value in sweeper_params.items()] if multirun else []
    combined += list(arguments)
    parsed = _parse(combined)
    # A later override of a key replaces an earlier one, as in BasicSweeper (the command line beats the YAML).
    final = list({o.get_key_element(): o for o in parsed}.values())
    swept = [o for o in final if o.is_sweep_override()]
    if swept and not multirun:
        raise UserError(f"{swept[0].input_line}: several values need --multirun (-m)")
    base = tuple(o.input_line for o in final if not o.is_sweep_override())
    try:
        (points,) = BasicSweeper.split_arguments(final, None)
    except HydraException:
        bad = next(o.input_line for o in swept if not o.is_discrete_sweep())
        raise UserError(f"{bad}: not a grid; use a comma list, range() or choice()") from None
    return Grid(base, tuple(o.get_key_element() for o in swept), tuple(tuple(p) for p in points))
