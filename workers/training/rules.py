"""Range rules for config groups: a key, a predicate, and the words that say what is allowed.

Each failed rule is one ``ValueError`` line naming the key, its value and what is allowed. Pure Python, no torch:
the control plane applies the same rules to every grid point before anything is launched.
"""

from __future__ import annotations

from typing import Any, Callable, Collection

Rule = tuple[str, Callable[[Any], bool], str]


def show(value: Any) -> str:
    """A value as the user types it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(show, value)) + "]"
    return str(value)


def require_known(group: str, name: str, allowed: Collection[str]) -> None:
    if name not in allowed:
        raise ValueError(f"{group}.name={name}: not known; allowed: {', '.join(sorted(allowed))}")


def apply_rules(group: str, cfg: Any, rules: tuple[Rule, ...]) -> None:
    """``cfg``: one group of a typed trial config (workers/trial_config.py)."""
    for key, ok, allowed in rules:
        if not hasattr(cfg, key):
            raise ValueError(f"{group}.{key} is missing: {group}={cfg.name} needs it ({allowed})")
        value = getattr(cfg, key)
        if not ok(value):
            raise ValueError(f"{group}.{key}={show(value)}: must be {allowed}")
