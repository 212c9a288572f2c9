"""What the config tree offers, for the tests that keep each registry equal to it."""

from __future__ import annotations

import yaml

from orchestrator.settings import CONF_DIR
from workers.training.references import resolve


def group_options(group: str) -> set[str]:
    """The options of a config group, as `group=NAME` selects them from ``orchestrator/conf/``."""
    return {yaml.safe_load(path.read_text()).get("name", path.stem) for path in (CONF_DIR / group).glob("*.yaml")
            if not path.name.startswith("_")}


def resolves(reference: str) -> bool:
    """A registry's "module:function" names a callable."""
    return callable(resolve(reference))
