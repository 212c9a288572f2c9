"""Nested configs as dotted keys (``optimizer.lr``): how MLflow params and a refused resume's changes name a value."""

from __future__ import annotations

import json
from typing import Any, Mapping


def dotted(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flatten(config: Mapping[str, Any]) -> dict[str, str]:
    """Dotted keys with string values, as MLflow params (lists as JSON)."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in dotted(config).items()}
