"""Stable ids: a trial is the hash of what it computes, not of where it runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from orchestrator.dotted_keys import dotted
from workers.training.model_kinds import FORMER_NAMES

# Top-level groups that say where or how to run, never what is computed.
WHERE_TO_RUN_GROUPS = ("cluster", "tracking", "sweep", "hydra")
# Groups computed from a trial's checkpoints after training: they never change what a trial trains, so adding
# `spectrum=slq` to a finished sweep finds its trials finished. A spectrum result has its own key (trial,
# checkpoint epoch, protocol: workers/spectrum_protocol.py).
AFTER_TRAINING_GROUPS = ("spectrum",)
# What `spectrum` put into every id while it was part of identity: the `disabled` preset as it composed then. It is
# hashed in the group's place, so that every trial and sweep id computed before keeps its value.
SPECTRUM_PLACEHOLDER = {"enabled": False, "at_epochs": [], "operator": "hessian", "steps": 80, "num_vectors": 5,
                        "seed": 0, "distribution": "rademacher", "bn_mode": "eval", "dtype": "float32",
                        "max_samples": None, "batch_size": 1024}
# Keys inside otherwise computational groups that only place work.
WHERE_TO_RUN_KEYS = {
    # A path on this machine; the same files elsewhere are the same dataset.
    "dataset": ("root",),
    "trainer": ("device", "eval_batch_size"),
    "checkpoint": ("every", "keep"),
}


def identity_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides a trial's results (idempotent: a recorded identity that still
    holds a group since left out of identity loses it here)."""
    kept = {k: v for k, v in config.items() if k not in WHERE_TO_RUN_GROUPS + AFTER_TRAINING_GROUPS}
    for group, keys in WHERE_TO_RUN_KEYS.items():
        if group in kept:
            kept[group] = {k: v for k, v in kept[group].items() if k not in keys}
    model = kept.get("model")
    if isinstance(model, Mapping) and model.get("name") in FORMER_NAMES:
        # Ids hash a model family's former name, so that every trial and sweep id computed before keeps its value.
        kept["model"] = {**model, "name": FORMER_NAMES[model["name"]]}
    return kept


def stable_hash(value: Any, length: int = 12) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _hashed(identity: Mapping[str, Any]) -> dict[str, Any]:
    return {**identity, "spectrum": SPECTRUM_PLACEHOLDER}


def trial_id(config: Mapping[str, Any]) -> str:
    return stable_hash(_hashed(identity_config(config)))


def sweep_id(name: str | None, base_config: Mapping[str, Any], swept_keys: Sequence[str]) -> str:
    """The sweep's name if given; else a hash of the base config and the swept keys (not their values), so that
    adding values to a grid and re-running extends the same sweep."""
    if name:
        return name
    return "sweep-" + stable_hash({"base": _hashed(identity_config(base_config)), "swept": sorted(swept_keys)}, 10)


UNSET = object()


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every dotted key of the two identities that differs; UNSET where a side
    lacks the key. A sweep recorded while spectrum settings were part of identity compares without them."""
    old_flat, new_flat = dotted(identity_config(old)), dotted(identity_config(new))
    return [(k, old_flat.get(k, UNSET), new_flat.get(k, UNSET)) for k in sorted(old_flat.keys() | new_flat.keys())
            if old_flat.get(k, UNSET) != new_flat.get(k, UNSET)]
