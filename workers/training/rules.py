"""Range rules for config groups: a key, a predicate, and the words that say what is allowed.

Each failed rule is one ``ValueError`` line naming the key, its value and what is allowed. Pure Python, no torch:
the control plane applies the same rules to every grid point before anything is launched.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Mapping

Rule = tuple[str, Callable[[Any], bool], str]


def show(value: Any) -> str:
    return "null" if value is None else str(value)


def require_known(group: str, name: str, allowed: Collection[str]) -> None:
    if name not in allowed:
        raise ValueError(f"{group}.name={name}: not known; allowed: {', '.join(sorted(allowed))}")


def apply_rules(group: str, cfg: Mapping, rules: tuple[Rule, ...]) -> None:
    for key, ok, allowed in rules:
        if key not in cfg:
            raise ValueError(f"{group}.{key} is missing: {group}={cfg['name']} needs it ({allowed})")
        if not ok(cfg[key]):
            raise ValueError(f"{group}.{key}={show(cfg[key])}: must be {allowed}")
