"""The typed schema behind every YAML file in ``orchestrator/conf/``: the classes of :mod:`workers.trial_config`.

Each config group option extends its schema (``defaults: [_<option>_schema]``), so a misspelt key or a value of the
wrong type fails at composition time with Hydra's own message, before anything is launched. The model, optimizer
and schedule options take their schema from their registry entry; range checks that a type cannot express live
in the registries and in :mod:`workers.config_rules`.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from workers.config_structure import schema_node
from workers.training.model_kinds import MODELS
from workers.training.optimizers import OPTIMIZERS
from workers.training.schedules import SCHEDULES
from workers.trial_config import ClusterConfig, DatasetConfig, SpectrumConfig, TrackingConfig, TrialConfig


def group_schemas() -> dict[str, dict[str, type]]:
    """Each group's schema classes, by the option name its YAML extends them under."""
    return {
        "model": {name: kind.config for name, kind in MODELS.items()},
        "optimizer": {name: kind.config for name, kind in OPTIMIZERS.items()},
        "schedule": {name: kind.config for name, kind in SCHEDULES.items()},
        "dataset": {"dataset": DatasetConfig},
        "spectrum": {"spectrum": SpectrumConfig},
        "cluster": {"cluster": ClusterConfig},
        "tracking": {"tracking": TrackingConfig},
    }


def register_configs() -> None:
    """Register the schemas as ``<group>/_<name>_schema`` so each YAML option can extend one."""
    store = ConfigStore.instance()
    store.store(name="_config_schema", node=schema_node(TrialConfig))
    for group, schemas in group_schemas().items():
        for name, cls in schemas.items():
            store.store(group=group, name=f"_{name}_schema", node=schema_node(cls))
