"""Iterate averaging: the arithmetic mean of the right iterates, and BatchNorm statistics made for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workers.training.averaging import IterateAverage, recompute_batchnorm
from workers.training.recipe import Recipe


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _data(n: int = 40):
    generator = torch.Generator().manual_seed(3)
    return torch.randn(n, 5, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))


def test_per_step_average_is_the_mean_of_the_iterates_after_each_step_from_T_avg(trial_cfg, epoch_runner) -> None:
    cfg = trial_cfg("optimizer=swa", "optimizer.lr=0.05", "optimizer.averaging.start_epoch=2",
                    "optimizer.averaging.every=step", "schedule=paper", "trainer.epochs=4")
    model, (x, y) = _mlp(), _data()
    recipe = Recipe(cfg, model, steps_per_epoch=4)
    generator, iterates, step = torch.Generator().manual_seed(0), [], 0
    for epoch in range(4):
        recipe.set_epoch(epoch)
        record = (lambda: iterates.append(_flat(model).clone())) if epoch >= 2 else None
        step = epoch_runner(model, recipe, x, y, epoch, 10, generator, step=step, on_step=record)
        recipe.after_epoch(epoch)
        if epoch < 2:
            assert recipe.averaged_model(x) is None
    assert len(iterates) == 8 and recipe.averaged_count == 8
    torch.testing.assert_close(_flat(recipe.averaged_model(x)), torch.stack(iterates).mean(0), rtol=1e-6, atol=1e-7)


def test_per_epoch_average_is_the_mean_of_the_epoch_end_weights_from_T_avg(trial_cfg, epoch_runner) -> None:
    cfg = trial_cfg("optimizer=gadam", "optimizer.lr=0.01", "optimizer.weight_decay=1e-3",
                    "optimizer.averaging.start_epoch=2", "schedule=paper", "trainer.epochs=6")
    model, (x, y) = _mlp(), _data()
    recipe = Recipe(cfg, model, steps_per_epoch=4)
    generator, iterates = torch.Generator().manual_seed(0), []
    for epoch in range(6):
        recipe.set_epoch(epoch)
        epoch_runner(model, recipe, x, y, epoch, 10, generator)
        recipe.after_epoch(epoch)
        # T_avg = 2: the weights after 2, 3, ... completed epochs (ends of 0-based epochs 1, 2, ...).
        if epoch + 1 >= 2:
            iterates.append(_flat(model).clone())
        assert recipe.averaged_count == len(iterates)
    averaged = recipe.averaged_model(x)
    torch.testing.assert_close(_flat(averaged), torch.stack(iterates).mean(0), rtol=1e-6, atol=1e-7)
    assert not torch.equal(_flat(averaged), _flat(model))
    assert not averaged.training and not any(p.requires_grad for p in averaged.parameters())


def test_running_mean_stays_exact_over_many_updates() -> None:
    weight = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    average = IterateAverage([weight])
    values = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for value in values:
        weight.data.copy_(value)
        average.update()
    torch.testing.assert_close(average.mean[0], values.mean(0), rtol=1e-12, atol=1e-14)


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2, self.bn2 = nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _stats_on_the_data(model: _ConvNet, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and unbiased variance of each BatchNorm layer's input over all of ``x`` at once, with
    every BatchNorm normalising by those same full-data statistics (train mode on one full batch, no dropout)."""
    with torch.no_grad():
        h1 = model.conv1(x)
        stats = {"bn1": (h1.mean((0, 2, 3)), h1.var((0, 2, 3), unbiased=True))}
        a1 = torch.relu(nn.functional.batch_norm(h1, None, None, model.bn1.weight, model.bn1.bias, True, 0.0, model.bn1.eps))
        h2 = model.conv2(a1)
        stats["bn2"] = (h2.mean((0, 2, 3)), h2.var((0, 2, 3), unbiased=True))
    return stats


def test_batchnorm_statistics_of_the_average_are_those_of_the_training_data(trial_cfg, epoch_runner) -> None:
    cfg = trial_cfg("optimizer=swa", "optimizer.lr=0.05", "optimizer.averaging.start_epoch=1", "trainer.epochs=3",
                    "trainer.batch_size=64")
    torch.manual_seed(0)
    model = _ConvNet()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 6, 6, generator=generator) * 2 + 1, torch.randint(0, 3, (48,), generator=generator)
    recipe = Recipe(cfg, model, steps_per_epoch=3)
    for epoch in range(3):
        recipe.set_epoch(epoch)
        epoch_runner(model, recipe, x, y, epoch, 16, generator)
        recipe.after_epoch(epoch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    averaged = recipe.averaged_model(x)  # one batch of 64 >= 48 examples: exact full-data statistics

    expected = _stats_on_the_data(averaged, x)
    for name in ("bn1", "bn2"):
        layer = getattr(averaged, name)
        torch.testing.assert_close(layer.running_mean, expected[name][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.running_var, expected[name][1], rtol=1e-5, atol=1e-6)
    # The training model and the global RNG (dropout stays off) are untouched.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.equal(averaged.bn1.running_mean, model.bn1.running_mean)


def test_batchnorm_mean_is_exact_with_uneven_batches() -> None:
    torch.manual_seed(0)
    model = _ConvNet()
    x = torch.randn(50, 3, 6, 6) + 3
    recompute_batchnorm(model, x, batch_size=16)  # 16 + 16 + 16 + 2: each batch weighted by its size
    torch.testing.assert_close(model.bn1.running_mean, model.conv1(x).detach().mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert not model.training and model.bn1.momentum == 0.1


def test_average_state_round_trips_and_checks_shapes() -> None:
    weight = nn.Parameter(torch.ones(2))
    average = IterateAverage([weight])
    average.update()
    weight.data.fill_(3.0)
    average.update()
    restored = IterateAverage([nn.Parameter(torch.zeros(2))])
    restored.load_state_dict(average.state_dict())
    assert restored.count == 2 and torch.equal(restored.mean[0], torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="does not match this model"):
        IterateAverage([nn.Parameter(torch.zeros(3))]).load_state_dict(average.state_dict())
