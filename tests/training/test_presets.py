"""Every experiment preset composes, and every grid point it sweeps is a valid training config."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from orchestrator.settings import CONF_DIR
from orchestrator.schema import register_configs
from workers.config_structure import to_trial_config
from workers.trial_config import TrialConfig
from workers.training.config_checks import check_training_config
from workers.training.models import build_model

PAPER = ["paper_mlp_mnist", "paper_cifar100_vgg16", "paper_cifar100_preresnet164", "paper_cifar100_wrn28x10", "l2_spectrum"]
PRESETS = PAPER + [f"quick/{name}" for name in PAPER]
INPUT_SHAPES = {"mnist": (1, 28, 28), "mnist5k": (784,), "cifar100": (3, 32, 32)}


def _compose(*overrides: str, hydra_node: bool = False):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


@functools.lru_cache(maxsize=None)
def _grid(preset: str) -> tuple[TrialConfig, ...]:
    """The trial configs of the preset's sweep, as Hydra's basic sweeper expands ``hydra.sweeper.params``.

    Composing is slow, so only config group choices (``optimizer: sgd,swa``) are composed; values are set on the
    composed config, where the schema still refuses unknown keys and wrong types.
    """
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = compose(config_name="config", overrides=[f"+experiment={preset}"], return_hydra_config=True)
        params = OmegaConf.to_container(base.hydra.sweeper.params)
        groups = {k: str(v).split(",") for k, v in params.items() if "." not in k}
        values = {k: str(v).split(",") for k, v in params.items() if "." in k}
        points = []
        for choice in itertools.product(*groups.values()):
            group_overrides = [f"{k}={v}" for k, v in zip(groups, choice)]
            overrides = [f"+experiment={preset}", "dataset.root=/data", *group_overrides]
            composed = compose(config_name="config", overrides=overrides)
            for setting in itertools.product(*values.values()):
                cfg = composed.copy()
                for key, value in zip(values, setting):
                    OmegaConf.update(cfg, key, yaml.safe_load(value))
                points.append(to_trial_config(cfg))
    return tuple(points)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_grid_point_is_a_valid_trial(preset: str) -> None:
    points = _grid(preset)
    assert len(points) == len({repr(p) for p in points}) > 1
    for cfg in points:
        check_training_config(cfg)
    first = points[0]
    with torch.device("meta"):
        build_model(first.model, INPUT_SHAPES[first.dataset.name], 100)


@pytest.mark.parametrize("preset", PAPER[:4])
def test_paper_presets_follow_the_appendix(preset: str) -> None:
    points = _grid(preset)
    cifar = "cifar100" in preset
    assert {p.optimizer.name for p in points} == {"sgd", "swa"}
    assert {p.optimizer.lr for p in points} == {0.01, 0.03, 0.1}
    assert {p.optimizer.weight_decay for p in points} == {1e-4, 1e-3}
    for cfg in points:
        assert cfg.trainer.epochs == (300 if cifar else 50)
        assert cfg.schedule.name == "paper" and cfg.schedule.final_ratio == 0.01
        assert cfg.schedule.avg_ratio == 0.5
        assert cfg.dataset.augment is cifar


def test_adam_family_command_replaces_the_lr_grid() -> None:
    cfg = _compose("+experiment=paper_cifar100_vgg16", "optimizer=gadam", "optimizer.lr=3e-4")
    assert cfg.optimizer.name == "gadam" and cfg.optimizer.lr == 3e-4
    assert cfg.optimizer.averaging.enabled and cfg.optimizer.averaging.start_epoch == 161


def test_l2_spectrum_sweeps_the_l2_coefficient_with_slq() -> None:
    points = _grid("l2_spectrum")
    assert sorted(p.optimizer.weight_decay for p in points) == [0, 1e-4, 1e-3, 1e-2]
    assert all(p.spectrum.enabled and p.optimizer.name == "sgd" for p in points)
    assert all(p.model.name == "mlp" for p in points)
