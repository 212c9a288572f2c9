"""Stable ids: a trial is the hash of what it computes, not of where it runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

# Top-level groups that say where or how to run, never what is computed.
WHERE_TO_RUN_GROUPS = ("cluster", "tracking", "sweep", "hydra")
# Keys inside otherwise computational groups that only place work.
WHERE_TO_RUN_KEYS = {
    # A path on this machine; the same files elsewhere are the same dataset.
    "dataset": ("root",),
    "trainer": ("device", "eval_batch_size"),
    # Not spectrum.batch_size: with BatchNorm in train mode the batches are part of the operator.
    "spectrum": ("num_workers", "gpus_per_worker", "cpus_per_worker", "basis_device"),
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


UNSET = object()


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every dotted key that differs; UNSET where a side lacks the key."""
    old_flat, new_flat = dotted(old), dotted(new)
    return [(k, old_flat.get(k, UNSET), new_flat.get(k, UNSET)) for k in sorted(old_flat.keys() | new_flat.keys())
            if old_flat.get(k, UNSET) != new_flat.get(k, UNSET)]
