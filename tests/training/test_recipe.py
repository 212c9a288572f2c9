"""A Recipe checkpointed mid-run and restored into fresh objects continues bit for bit."""

from __future__ import annotations

import io

import pytest
import torch

from workers.training.augment import RandomCropFlip
from workers.training.models import build_model
from workers.training.recipe import Recipe

EPOCHS, SPLIT_AT, BATCH = 4, 2, 16


def _data():
    generator = torch.Generator().manual_seed(5)
    return torch.randn(48, 3, 8, 8, generator=generator), torch.randint(0, 10, (48,), generator=generator)


def _fresh(cfg: dict):
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, 8, 8), 10)
    return model, Recipe(cfg, model, steps_per_epoch=3)


def _train(cfg: dict, model, recipe, generator, epochs: range, epoch_runner) -> None:
    x, y = _data()
    augment = RandomCropFlip(2, (0.0, 0.0, 0.0))
    for epoch in epochs:
        recipe.set_epoch(epoch)
        epoch_runner(model, recipe, x, y, epoch, BATCH, generator, augment=augment, step=epoch * 3)
        recipe.after_epoch(epoch)


def _checkpoint(model, recipe, generator) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "recipe": recipe.state_dict(), "batches": generator.get_state()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=swa", "optimizer.averaging.every=step", "optimizer.averaging.start_epoch=1", "optimizer.lr=0.05",
         "optimizer.weight_decay=1e-3"],
        ["optimizer=gadamx", "optimizer.averaging.start_epoch=1", "optimizer.weight_decay=1e-3"],
        ["optimizer=gadam", "optimizer.averaging.start_epoch=3"],  # checkpoint taken before averaging starts
        ["optimizer=adam", "optimizer.weight_decay=1e-4"],
    ],
)
def test_state_dict_round_trip_resumes_identically(trial_cfg, epoch_runner, overrides: list[str]) -> None:
    cfg = trial_cfg("model=preresnet", "model.depth=11", "schedule=paper", f"trainer.epochs={EPOCHS}",
                    f"trainer.batch_size={BATCH}", *overrides)
    x, _ = _data()

    straight, straight_recipe = _fresh(cfg)
    generator = torch.Generator().manual_seed(0)
    _train(cfg, straight, straight_recipe, generator, range(EPOCHS), epoch_runner)

    first, first_recipe = _fresh(cfg)
    generator = torch.Generator().manual_seed(0)
    _train(cfg, first, first_recipe, generator, range(SPLIT_AT), epoch_runner)
    saved = torch.load(io.BytesIO(_checkpoint(first, first_recipe, generator)), weights_only=True)

    resumed, resumed_recipe = _fresh(cfg)
    resumed.load_state_dict(saved["model"])
    resumed_recipe.load_state_dict(saved["recipe"])
    generator = torch.Generator()
    generator.set_state(saved["batches"])
    _train(cfg, resumed, resumed_recipe, generator, range(SPLIT_AT, EPOCHS), epoch_runner)

    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed_recipe.averaged_count == straight_recipe.averaged_count
    averaged, resumed_averaged = straight_recipe.averaged_model(x), resumed_recipe.averaged_model(x)
    if averaged is None:
        assert resumed_averaged is None and "averaging" not in resumed_recipe.state_dict()
    else:
        assert straight_recipe.averaged_count > 0
        for key, value in averaged.state_dict().items():
            assert torch.equal(value, resumed_averaged.state_dict()[key]), key


def test_restoring_a_checkpoint_without_an_average_into_an_averaging_recipe_fails(trial_cfg) -> None:
    plain = Recipe(trial_cfg("optimizer=adamw"), torch.nn.Linear(2, 2), 1)
    averaging = Recipe(trial_cfg("optimizer=gadam"), torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="the checkpoint has no iterate average"):
        averaging.load_state_dict(plain.state_dict())
