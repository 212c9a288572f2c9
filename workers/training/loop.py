"""One epoch of training and one evaluation pass over in-memory tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.training.data import DatasetSplits
from workers.training.recipe import Recipe


class NonFiniteLossError(FloatingPointError):
    """The training loss became nan or inf: the trial cannot recover by itself."""


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    steps: int


def train_one_epoch(
    model: nn.Module,
    recipe: Recipe,
    splits: DatasetSplits,
    epoch: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    first_step: int = 0,
) -> EpochStats:
    """Shuffle with ``generator``, step through the training split, return its mean loss and accuracy.

    Per-step losses stay on the device and are checked once at the end, so a GPU never waits for the host.
    """
    model.train()
    n = len(splits.train_targets)
    order = torch.randperm(n, generator=generator)
    losses, correct = [], torch.zeros((), device=device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        inputs = splits.train_inputs[idx]
        if splits.augment is not None:
            inputs = splits.augment(inputs, generator)
        inputs, targets = inputs.to(device, non_blocking=True), splits.train_targets[idx].to(device, non_blocking=True)
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, targets)
        recipe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        recipe.optimizer.step()
        recipe.after_step(epoch, first_step + len(losses))
        losses.append(loss.detach() * len(idx))
        correct += (outputs.detach().argmax(1) == targets).sum()
    per_step = torch.stack(losses)
    finite = torch.isfinite(per_step)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0])
        value = "nan" if bool(torch.isnan(per_step[bad])) else "inf"
        raise NonFiniteLossError(f"loss became {value} at epoch {epoch + 1}, step {first_step + bad + 1}")
    return EpochStats(float(per_step.sum()) / n, float(correct) / n, len(losses))


@torch.no_grad()
def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode."""
    model.eval()
    total_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    for start in range(0, len(targets), batch_size):
        x = inputs[start : start + batch_size].to(device, non_blocking=True)
        y = targets[start : start + batch_size].to(device, non_blocking=True)
        outputs = model(x)
        total_loss += F.cross_entropy(outputs, y, reduction="sum")
        correct += (outputs.argmax(1) == y).sum()
    return float(total_loss) / len(targets), float(correct) / len(targets)
