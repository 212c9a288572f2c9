"""Gadam, GadamX and the weight-decay conventions, step for step."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from config_groups import group_options
from workers.training.adamx import PartiallyAdaptiveAdamW
from workers.training.optimizers import OPTIMIZERS, build_optimizer, l2_coefficient
from workers.training.recipe import Recipe


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator)) for _ in range(count)]


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(batch[0]), batch[1]).backward()
    optimizer.step()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gadam_before_averaging_is_adamw_step_for_step(trial_cfg) -> None:
    cfg = trial_cfg("optimizer=gadam", "optimizer.lr=0.01", "optimizer.weight_decay=1e-3", "schedule=paper",
                    "optimizer.averaging.start_epoch=3", "optimizer.averaging.every=step", "trainer.epochs=6")
    ours, reference = _model(), _model()
    recipe = Recipe(cfg, ours, steps_per_epoch=5)
    adamw = torch.optim.AdamW(reference.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-3 / 0.01)
    batches = _batches(5)
    for epoch in range(3):
        lr = recipe.set_epoch(epoch)
        for group in adamw.param_groups:
            group["lr"] = lr
        for step, batch in enumerate(batches):
            _step(ours, recipe.optimizer, batch)
            recipe.after_step(epoch, epoch * 5 + step)
            _step(reference, adamw, batch)
            assert torch.equal(_flat(ours), _flat(reference)), f"epoch {epoch} step {step}"
        recipe.after_epoch(epoch)
        assert recipe.averaged_model(torch.randn(4, 6)) is None


@pytest.mark.parametrize("every", ["epoch", "step"])
def test_gadamx_with_p_one_half_is_gadam(trial_cfg, every: str) -> None:
    common = ["optimizer.lr=0.003", "optimizer.weight_decay=1e-3", "schedule=paper", "trainer.epochs=4",
              "optimizer.averaging.start_epoch=1", f"optimizer.averaging.every={every}"]
    gadam_model, gadamx_model = _model(), _model()
    gadam = Recipe(trial_cfg("optimizer=gadam", *common), gadam_model, 4)
    gadamx = Recipe(trial_cfg("optimizer=gadamx", "optimizer.p=0.5", *common), gadamx_model, 4)
    assert isinstance(gadamx.optimizer, PartiallyAdaptiveAdamW)
    batches = _batches(4)
    for epoch in range(4):
        gadam.set_epoch(epoch), gadamx.set_epoch(epoch)
        for step, batch in enumerate(batches):
            _step(gadam_model, gadam.optimizer, batch)
            _step(gadamx_model, gadamx.optimizer, batch)
            gadam.after_step(epoch, step), gadamx.after_step(epoch, step)
            assert torch.equal(_flat(gadam_model), _flat(gadamx_model)), f"epoch {epoch} step {step}"
        gadam.after_epoch(epoch), gadamx.after_epoch(epoch)
    inputs = torch.randn(4, 6)
    assert torch.equal(_flat(gadam.averaged_model(inputs)), _flat(gadamx.averaged_model(inputs)))


def test_partial_adaptivity_follows_its_formula() -> None:
    """m_hat / (v_hat^p + eps) with decoupled decay, against the formula written out in float64."""
    lr, wd, p, betas, eps = 0.01, 0.05, 0.125, (0.9, 0.999), 1e-8
    model = _model().double()
    optimizer = PartiallyAdaptiveAdamW(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd, p=p)
    w = [q.detach().clone() for q in model.parameters()]
    m = [torch.zeros_like(q) for q in w]
    v = [torch.zeros_like(q) for q in w]
    for k, (x, y) in enumerate(_batches(6), start=1):
        _step(model, optimizer, (x.double(), y))
        for i, q in enumerate(model.parameters()):
            g = q.grad
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            m_hat, v_hat = m[i] / (1 - betas[0] ** k), v[i] / (1 - betas[1] ** k)
            w[i] = w[i] * (1 - lr * wd) - lr * m_hat / (v_hat**p + eps)
            torch.testing.assert_close(q.detach(), w[i], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["adamw", "gadam", "gadamx"])
def test_decoupled_decay_is_the_searched_value_scaled_by_lr(trial_cfg, name: str) -> None:
    # Zero gradients leave only the decay: each step at lr_t = lr multiplies w by exactly (1 - weight_decay).
    cfg = trial_cfg(f"optimizer={name}", "optimizer.lr=0.02", "optimizer.weight_decay=1e-3")
    weight = nn.Parameter(torch.ones(3, dtype=torch.float64))
    optimizer = build_optimizer(cfg.optimizer, [weight])
    for _ in range(10):
        weight.grad = torch.zeros_like(weight)
        optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.full((3,), (1 - 1e-3) ** 10, dtype=torch.float64))


@pytest.mark.parametrize("name", ["sgd", "swa", "adam"])
def test_coupled_l2_adds_gamma_w_to_the_gradient(trial_cfg, name: str) -> None:
    cfg = trial_cfg(f"optimizer={name}", "optimizer.lr=0.1", "optimizer.weight_decay=0.01")
    weight = nn.Parameter(torch.full((2,), 2.0, dtype=torch.float64))
    optimizer = build_optimizer(cfg.optimizer, [weight])
    weight.grad = torch.zeros_like(weight)
    optimizer.step()
    # SGD's first step moves by lr * gamma * w; Adam's by lr * sign (its normalised gradient is gamma*w/|gamma*w|).
    expected = 2.0 - 0.1 * 0.01 * 2.0 if name != "adam" else 2.0 - 0.1
    torch.testing.assert_close(weight.detach(), torch.full((2,), expected, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=gadamx", "optimizer.p=0.7"], r"optimizer.p=0.7: must be a number in \(0, 0.5\]"),
        (["optimizer=gadam", "optimizer.averaging.every=batch"], "optimizer.averaging.every=batch: must be epoch or step"),
        (["optimizer=swa", "optimizer.averaging.start_epoch=5", "trainer.epochs=5"], "must be below trainer.epochs=5"),
        (["optimizer=sgd", "optimizer.momentum=1.0"], r"optimizer.momentum=1.0: must be a number in \[0, 1\)"),
        (["optimizer=nesterov", "optimizer.momentum=0"], r"optimizer.momentum=0.0: must be a number in \(0, 1\)"),
        (["optimizer=nesterov", "optimizer.nesterov=false"], "optimizer.nesterov=False: must be true"),
        (["optimizer=adam", "optimizer.lr=0"], "optimizer.lr=0.0: must be a number > 0"),
    ],
)
def test_bad_optimizer_settings_are_refused(trial_cfg, overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recipe(trial_cfg(*overrides), _model(), 1)


def test_averaging_start_defaults_to_half_the_epochs(trial_cfg) -> None:
    assert Recipe(trial_cfg("optimizer=gadam", "trainer.epochs=9"), _model(), 1).averaging_start == 4
    assert Recipe(trial_cfg("optimizer=adamw", "trainer.epochs=9"), _model(), 1).averaging_start is None
    assert trial_cfg("optimizer=swa").optimizer.averaging.enabled is True


def test_nesterov_is_torch_sgd_with_nesterov_step_for_step(trial_cfg) -> None:
    """The optimizer added through the registry alone (its entry and its YAML) trains as torch's own."""
    cfg = trial_cfg("optimizer=nesterov", "optimizer.lr=0.05", "optimizer.weight_decay=1e-3")
    ours, reference = _model(), _model()
    optimizer = build_optimizer(cfg.optimizer, ours.parameters())
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    for batch in _batches(5):
        _step(ours, optimizer, batch)
        _step(reference, torch_sgd, batch)
    assert torch.equal(_flat(ours), _flat(reference))
    assert not torch.equal(_flat(ours), _flat(_model())), "it trained"


def test_every_optimizer_option_has_one_registry_entry() -> None:
    assert group_options("optimizer") == set(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_l2_term_the_spectrum_adds_follows_the_registry(trial_cfg, name: str) -> None:
    cfg = trial_cfg(f"optimizer={name}", "optimizer.weight_decay=0.01")
    expected = 0.0 if name in ("adamw", "gadam", "gadamx") else 0.01
    assert l2_coefficient(cfg.optimizer) == expected
