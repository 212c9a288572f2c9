"""OmegaConf's side of the typed trial config: the schema Hydra composes onto, and the frozen values built from a
composition or from a stored config.

The classes in :mod:`workers.trial_config` are frozen, and OmegaConf makes every node typed by a frozen dataclass
read-only, nodes it creates while merging included, so Hydra could not merge a YAML option or an override into
them. Composition therefore runs on writable mirrors of those classes, generated from them (same fields, types,
defaults and inheritance; nothing is written twice), and ``OmegaConf.to_object``'s result is frozen at the end.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from workers.trial_config import DatasetConfig, TrialConfig

_MIRRORS: dict[type, type] = {}
_FROZEN: dict[type, type] = {}


def writable_mirror(cls: type) -> type:
    """A non-frozen dataclass with ``cls``'s fields, types, defaults and bases, nested classes mirrored too."""
    if cls not in _MIRRORS:
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                nested = writable_mirror(kind)
                default = (dataclasses.field(default_factory=nested) if f.default_factory is not dataclasses.MISSING
                           else dataclasses.field(default=f.default))
                specs.append((f.name, nested, default))
            else:
                specs.append((f.name, kind, dataclasses.field(default=f.default, default_factory=f.default_factory)))
        bases = tuple(writable_mirror(base) for base in cls.__bases__ if dataclasses.is_dataclass(base))
        mirror = dataclasses.make_dataclass(cls.__name__, specs, bases=bases, namespace={"__doc__": cls.__doc__})
        _MIRRORS[cls], _FROZEN[mirror] = mirror, cls
    return _MIRRORS[cls]


def freeze(value: Any) -> Any:
    """The frozen value of a mirror instance (``OmegaConf.to_object`` of a composition); other values as they are."""
    if type(value) in _FROZEN:
        return _FROZEN[type(value)](**{f.name: freeze(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return value


def schema_node(cls: type) -> DictConfig:
    return OmegaConf.structured(writable_mirror(cls))


def to_trial_config(cfg: DictConfig) -> TrialConfig:
    """The frozen trial config of a composition (without Hydra's own node), every interpolation resolved."""
    config = freeze(OmegaConf.to_object(cfg))
    if not isinstance(config, TrialConfig):
        raise TypeError(f"a trial config composes to TrialConfig, not {type(config).__name__}")
    return config


def trial_config_from(plain: Mapping[str, Any]) -> TrialConfig:
    """The frozen trial config of one stored as plain values (a run's ``trial_config.json``): merged onto the schema
    of the options it names, so a key it lacks (recorded before the key existed) takes today's default."""
    from workers.training.model_kinds import model_kind
    from workers.training.optimizers import OPTIMIZERS
    from workers.training.schedules import SCHEDULES

    schema = schema_node(TrialConfig)
    try:
        schema.model = schema_node(model_kind(plain["model"]["name"]).config)
        schema.dataset = schema_node(DatasetConfig)
        schema.optimizer = schema_node(OPTIMIZERS[plain["optimizer"]["name"]].config)
        schema.schedule = schema_node(SCHEDULES[plain["schedule"]["name"]].config)
        return to_trial_config(OmegaConf.merge(schema, plain))
    except (KeyError, ValueError, OmegaConfBaseException) as error:
        raise ValueError(f"not a trial config this version can read: {str(error).splitlines()[0]}") from None
