"""Trial configs composed from the real ``orchestrator/conf/`` tree; a training loop batching as the trainer does."""

from __future__ import annotations

from typing import Callable, Optional

import pytest
import torch
import torch.nn.functional as F

from trial_configs import compose_trial
from workers.trial_config import TrialConfig


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one thread is fastest, and several threads crawl when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trial_cfg() -> Callable[..., TrialConfig]:
    return compose_trial


def run_epoch(model, recipe, inputs, targets, epoch: int, batch_size: int, generator: torch.Generator,
              augment=None, step: int = 0, on_step: Optional[Callable[[], None]] = None) -> int:
    """One epoch: a seeded permutation, slices of in-memory tensors, forward/backward/step, the recipe's hooks."""
    model.train()
    order = torch.randperm(len(targets), generator=generator)
    for start in range(0, len(targets), batch_size):
        idx = order[start : start + batch_size]
        x = inputs[idx] if augment is None else augment(inputs[idx], generator)
        loss = F.cross_entropy(model(x), targets[idx])
        recipe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        recipe.optimizer.step()
        recipe.after_step(epoch, step)
        step += 1
        if on_step is not None:
            on_step()
    return step


@pytest.fixture
def epoch_runner() -> Callable[..., int]:
    return run_epoch
