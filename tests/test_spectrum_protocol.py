"""What keys a spectrum result: the protocol, which weights, which batch size; and the averaged model a checkpoint
carries against the one rebuilt from an older checkpoint's iterate average."""

from __future__ import annotations

import copy
import functools
from dataclasses import replace

import pytest
import torch

from orchestrator.planning import plan_sweep
from workers.spectrum_job import _network
from workers.spectrum_protocol import EVAL_BATCH_SIZE, batch_size_of, home_protocols, protocols_of
from workers.training.checkpoint import TrainingState
from workers.training.models import build_model
from workers.training.recipe import Recipe
from workers.trial_config import TrialConfig


@functools.lru_cache(maxsize=None)
def _config(*overrides: str) -> TrialConfig:
    [trial] = plan_sweep(["dataset=digits", "spectrum=slq", *overrides], multirun=False).trials
    return trial.config


def _with(config: TrialConfig, **spectrum: object) -> TrialConfig:
    return replace(config, spectrum=replace(config.spectrum, **spectrum))


def test_the_protocol_follows_what_decides_the_numbers_only() -> None:
    config = _config()
    [base] = protocols_of(config)
    assert len(base.id) == 8 and base.weights == "iterate"
    for key, value in (("steps", 40), ("seed", 1), ("dtype", "float64"), ("operator", "ggn"), ("max_samples", 100),
                       ("distribution", "gaussian"), ("bn_mode", "train"), ("num_vectors", 2)):
        assert protocols_of(_with(config, **{key: value}))[0].id != base.id, key
    for key, value in (("num_workers", 2), ("basis_device", "cpu"), ("batch_size", 64), ("progress_every", 3),
                       ("at_epochs", [1]), ("gpus_per_worker", 1.0)):
        assert protocols_of(_with(config, **{key: value}))[0].id == base.id, key


def test_batch_size_decides_the_operator_in_batchnorm_train_mode_only() -> None:
    config = _with(_config(), bn_mode="train", batch_size=64)
    assert protocols_of(config)[0].batch_size == 64
    assert protocols_of(_with(config, batch_size=32))[0].id != protocols_of(config)[0].id
    # Unset (null), the batch size is the one the trial trained with in train mode, a memory bound in eval mode.
    config = _with(config, batch_size=None)
    assert batch_size_of(config) == config.trainer.batch_size == protocols_of(config)[0].batch_size
    config = _with(config, bn_mode="eval")
    assert batch_size_of(config) == EVAL_BATCH_SIZE and protocols_of(config)[0].batch_size is None


def test_weights_default_to_both_with_averaging_and_name_their_metrics() -> None:
    iterate, average = protocols_of(_config("optimizer=gadam"))
    assert (iterate.weights, average.weights) == ("iterate", "average") and iterate.id != average.id
    assert average.metric_name("lambda_max", home=True) == "lambda_max_avg"
    assert average.metric_name("lambda_max", home=False) == f"lambda_max_avg.{average.id}"
    assert [p.weights for p in protocols_of(_config("optimizer=sgd"))] == ["iterate"]
    assert [p.weights for p in protocols_of(_with(_config("optimizer=swa"), weights="average"))] == ["average"]
    with pytest.raises(ValueError, match="spectrum.weights=average: optimizer sgd does not average iterates"):
        protocols_of(_with(_config("optimizer=sgd"), weights="average"))


def test_home_protocols_are_those_of_the_settings_a_run_was_created_with() -> None:
    stored = _config("optimizer=sgd")
    assert {p.id for p in protocols_of(stored)} <= home_protocols(stored)
    assert protocols_of(_with(stored, steps=12))[0].id not in home_protocols(stored)


def test_checkpointed_average_equals_the_one_rebuilt_from_an_older_checkpoint() -> None:
    # A BatchNorm network: the average needs its own statistics.
    [trial] = plan_sweep(["dataset=cifar10", "dataset.root=/data", "spectrum=slq", "optimizer=gadam",
                          "trainer.epochs=2", "optimizer.averaging.start_epoch=1", "model=vgg", "model.depth=11",
                          "model.width_factor=0.125"], multirun=False).trials
    config = trial.config
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    model = build_model(config.model, (3, 32, 32), 10)
    recipe = Recipe(config, model, 4)
    for epoch in range(2):
        recipe.set_epoch(epoch)
        for start in range(0, 64, 16):
            loss = torch.nn.functional.cross_entropy(model(inputs[start:start + 16]), targets[start:start + 16])
            recipe.optimizer.zero_grad()
            loss.backward()
            recipe.optimizer.step()
        recipe.after_epoch(epoch)
    averaged = recipe.averaged_model(inputs)
    _, average = protocols_of(config)
    new = TrainingState(2, 8, model.state_dict(), recipe.state_dict(), {}, averaged.state_dict())
    old = TrainingState(2, 8, model.state_dict(), recipe.state_dict(), {})
    fresh = build_model(config.model, (3, 32, 32), 10)
    from_checkpoint = copy.deepcopy(_network(average, new, fresh, inputs, config).state_dict())
    rebuilt = _network(average, old, fresh, inputs, config).state_dict()
    assert from_checkpoint.keys() == rebuilt.keys()
    assert not torch.equal(from_checkpoint["features.0.weight"], model.state_dict()["features.0.weight"])
    for key in from_checkpoint:
        assert torch.allclose(from_checkpoint[key].float(), rebuilt[key].float(), rtol=1e-6, atol=1e-7), key
    # Before averaging starts there is no average: left out under weights=both, an error when asked for alone.
    empty = TrainingState(1, 4, model.state_dict(), {**recipe.state_dict(), "averaging": {"count": 0, "mean": None}}, {})
    assert _network(average, empty, fresh, inputs, config) is None
    config = _with(config, weights="average")
    with pytest.raises(ValueError, match="holds no averaged weights yet"):
        _network(average, empty, fresh, inputs, config)
