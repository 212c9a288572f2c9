"""Registry entries name what needs torch as ``"module:function"``: the control plane reads the entries without
importing torch, and a worker imports the function when it needs it."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def resolve(reference: str) -> Callable[..., Any]:
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)
