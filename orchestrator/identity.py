"""Stable ids: a trial is the hash of what it computes, not of where it runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

# Top-level groups that say where or how to run, never what is computed.
WHERE_TO_RUN_GROUPS = ("cluster", "tracking", "sweep", "hydra")
# Keys inside otherwise computational groups that only place work.
WHERE_TO_RUN_KEYS = {
    "trainer": ("device", "eval_batch_size"),
    "spectrum": ("num_workers", "gpus_per_worker", "cpus_per_worker", "batch_size"),
    "checkpoint": ("every", "keep"),
}


def identity_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides a trial's results."""
    kept = {k: v for k, v in config.items() if k not in WHERE_TO_RUN_GROUPS}
    for group, keys in WHERE_TO_RUN_KEYS.items():
        if group in kept:
            kept[group] = {k: v for k, v in kept[group].items() if k not in keys}
    return kept


def stable_hash(value: Any, length: int = 12) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def trial_id(config: Mapping[str, Any]) -> str:
    return stable_hash(identity_config(config))


def sweep_id(name: str | None, base_config: Mapping[str, Any], swept_keys: Sequence[str]) -> str:
    """The sweep's name if given; else a hash of the base config and the swept keys (not their values), so that
    adding values to a grid and re-running extends the same sweep."""
    if name:
        return name
    return "sweep-" + stable_hash({"base": identity_config(base_config), "swept": sorted(swept_keys)}, 10)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": "0.1"}``, for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat
