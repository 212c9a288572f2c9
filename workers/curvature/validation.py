"""One-line ValueErrors that name the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Collection


def require_choice(name: str, value: object, allowed: Collection[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}")


def require_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass, but steps=True is a bug, not a request for one step.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an integer >= {minimum}")


def require_number(name: str, value: object, minimum: float, *, inclusive: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < minimum or (not inclusive and value == minimum):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name}={value!r} is invalid; it must be a number {bound} {minimum}")
