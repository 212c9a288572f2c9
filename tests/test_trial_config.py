"""The trial config crosses from the control plane to the workers as one typed, frozen value (workers/trial_config.py).

Hydra composes onto the same classes the workers read; each option's values land in its registry entry's class;
the value a worker gets is the one planned (pickled through Ray unchanged); a config stored in a run reads back as
the same value, including configs recorded before a key existed.
"""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from config_groups import group_options
from orchestrator.composition import composer
from orchestrator.errors import UserError
from orchestrator.planning import plan_sweep
from trial_configs import compose_trial
from workers.config_structure import trial_config_from
from workers.training.model_kinds import model_kind
from workers.training.optimizers import OPTIMIZERS
from workers.training.schedules import SCHEDULES
from workers.trial_config import (AveragingConfig, DatasetConfig, SpectrumConfig, TrialConfig, TrackingConfig,
                                  as_plain)


def test_a_planned_trial_carries_a_frozen_typed_config() -> None:
    [trial] = plan_sweep(["dataset=digits", "optimizer=gadamx", "optimizer.lr=3e-4", "trainer.epochs=2"],
                         multirun=False).trials
    config = trial.config
    assert isinstance(config, TrialConfig) and isinstance(config.dataset, DatasetConfig)
    assert type(config.optimizer) is OPTIMIZERS["gadamx"].config and isinstance(config.optimizer.averaging,
                                                                                 AveragingConfig)
    assert (config.optimizer.lr, config.optimizer.p, config.trainer.epochs) == (3e-4, 0.125, 2)
    assert isinstance(config.optimizer.lr, float) and isinstance(config.trainer.epochs, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optimizer.lr = 1.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config, "what a Ray task receives is what was planned"


@pytest.mark.parametrize(("group", "kind_of"), [
    ("model", lambda name: model_kind(name).config),
    ("optimizer", lambda name: OPTIMIZERS[name].config),
    ("schedule", lambda name: SCHEDULES[name].config),
])
def test_every_option_composes_to_its_registry_entrys_class(group: str, kind_of) -> None:
    for name in sorted(group_options(group)):
        extra = ["optimizer=gadam"] if group == "schedule" else []
        config = compose_trial(f"{group}={name}", *extra)
        assert type(getattr(config, group)) is kind_of(name), name


@pytest.mark.parametrize("overrides", [
    ["dataset=digits"],
    ["optimizer=gadamx", "schedule=paper", "spectrum=slq", "spectrum.at_epochs=[1]"],
    ["model=vgg", "model.classifier_hidden=[]", "dataset=cifar10", "dataset.root=/data", "optimizer=swa"],
    ["model=preresnet164", "dataset=cifar100", "dataset.root=/data", "tracking.uri=http://127.0.0.1:5000"],
])
def test_a_stored_config_reads_back_as_the_same_value(overrides: list[str]) -> None:
    config = compose_trial(*overrides)
    assert trial_config_from(as_plain(config)) == config


def test_a_config_stored_before_a_key_existed_takes_todays_default() -> None:
    stored = as_plain(compose_trial("spectrum=slq"))
    for key in ("basis_device", "weights", "progress_every", "progress_basis_mb"):
        del stored["spectrum"][key]
    del stored["tracking"]["outage_timeout"]
    config = trial_config_from(stored)
    assert config.spectrum.progress_every == SpectrumConfig().progress_every and config.spectrum.weights is None
    assert config.tracking.outage_timeout == TrackingConfig().outage_timeout


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["optimizer"].update(name="lion"), "not a trial config this version can read"),
    (lambda c: c["optimizer"].update(lr="fast"), "not a trial config this version can read"),
    (lambda c: c["trainer"].update(patience=3), "not a trial config this version can read"),
])
def test_a_stored_config_this_version_cannot_read_is_one_line(change, message: str) -> None:
    stored = as_plain(compose_trial())
    change(stored)
    with pytest.raises(ValueError, match=message) as raised:
        trial_config_from(stored)
    assert "\n" not in str(raised.value)


def test_a_bad_type_or_key_fails_at_composition_naming_it() -> None:
    with composer() as compose:
        with pytest.raises(UserError, match="optimizer.lr=fast"):
            compose.point(["optimizer.lr=fast"])
        with pytest.raises(UserError, match="optimizer.lrr=0.1: unknown key"):
            compose.point(["optimizer.lrr=0.1"])
