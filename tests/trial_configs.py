"""Typed trial configs for tests: composed from the real ``orchestrator/conf/`` tree as ``sweep run`` composes them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.composition import composer, to_trial_config
from workers.trial_config import TrialConfig


def compose_trial(*overrides: str) -> TrialConfig:
    """The frozen trial config ``sweep run`` would hand a worker for these overrides."""
    with composer() as compose:
        return to_trial_config(compose.point(list(overrides)))


def changed(config: Any, key: str, value: Any) -> Any:
    """A copy of a frozen config with one dotted key set: for values composition would refuse, as a stored or
    hand-made config may hold them."""
    head, _, rest = key.partition(".")
    return replace(config, **{head: changed(getattr(config, head), rest, value) if rest else value})
