"""Compose configs from ``conf/`` with Hydra, turning every composition error into a one-line ``UserError``."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from orchestrator.errors import UserError
from orchestrator.schema import register_configs
from orchestrator.settings import CONF_DIR

Composer = Callable[[Sequence[str]], DictConfig]


@contextmanager
def composer() -> Iterator[Composer]:
    """A function composing ``conf/config.yaml`` with overrides, the hydra node included."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="sweep"):

        def _compose(overrides: Sequence[str]) -> DictConfig:
            try:
                return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as error:
                raise UserError(describe_composition_error(error, overrides)) from None

        yield _compose


def describe_composition_error(error: Exception, overrides: Sequence[str]) -> str:
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option}: no such {group}; allowed: {', '.join(sorted(o for o in error.options if not o.startswith('_')))}"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        value = _override_value(overrides, key)
        shown = f"{key}={value}" if value is not None else key
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
            return f"{shown}: unknown key{_allowed_keys(cause)}"
        return f"{shown}: {_first_line(cause.msg)}"
    return _first_line(str(error))


def _allowed_keys(error: ConfigKeyError) -> str:
    parent = getattr(error, "parent_node", None)
    if isinstance(parent, DictConfig):
        return "; allowed keys here: " + ", ".join(sorted(str(k) for k in parent.keys()))
    return ""


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    for override in overrides:
        name, sep, value = override.partition("=")
        if sep and name.lstrip("+~") == key:
            return value
    return None


def _first_line(text: str) -> str:
    return re.split(r"\n", str(text).strip(), maxsplit=1)[0]


def to_container(cfg: DictConfig) -> dict:
    """The trial's config as plain dicts: resolved, without Hydra's own node."""
    trial_cfg = cfg.copy()
    with open_dict(trial_cfg):
        trial_cfg.pop("hydra", None)
    try:
        plain = OmegaConf.to_container(trial_cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        raise UserError(f"{getattr(error, 'full_key', '')}: {_first_line(str(error))}") from None
    assert isinstance(plain, dict)
    return plain
