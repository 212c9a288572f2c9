"""A trial's training recipe: optimizer, learning-rate schedule and iterate averaging behind one object.

The training loop only sees this interface, so new optimizers or averaging schemes never touch the loop.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from workers.training.optimizers import build_optimizer
from workers.training.schedules import build_schedule


class Recipe:
    def __init__(self, cfg: Mapping, model: nn.Module, steps_per_epoch: int) -> None:
        self.optimizer = build_optimizer(cfg["optimizer"], model.parameters())
        self._schedule = build_schedule(cfg["schedule"], float(cfg["optimizer"]["lr"]), int(cfg["trainer"]["epochs"]))
        self.steps_per_epoch = steps_per_epoch

    def lr_at(self, epoch: int) -> float:
        return self._schedule(epoch)

    def set_epoch(self, epoch: int) -> float:
        """Apply the schedule for ``epoch`` (0-based) to every parameter group; returns the rate."""
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def after_step(self, epoch: int, step: int) -> None:
        """Hook after each optimizer step (per-step iterate averaging)."""

    def after_epoch(self, epoch: int) -> None:
        """Hook after each epoch (per-epoch iterate averaging)."""

    def averaged_model(self, train_inputs: torch.Tensor) -> Optional[nn.Module]:
        """The iterate average, ready to evaluate; None while no average exists."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
