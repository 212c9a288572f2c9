"""A trial's training recipe: optimizer, learning-rate schedule and iterate averaging behind one object.

The training loop only sees this interface, so new optimizers or averaging schemes never touch the loop.

Iterate averaging (``optimizer.averaging.enabled``) starts once T_avg = ``averaging.start_epoch`` epochs are
complete. With ``every: epoch`` the weights at the end of each epoch join the average from the end of epoch
T_avg on (0-based epoch index T_avg - 1, as in Izmailov et al.'s SWA code); with ``every: step`` the weights after
every step of the epochs with 0-based index >= T_avg do.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from workers.training.averaging import IterateAverage, averaged_copy
from workers.training.config_checks import averaging_start_epoch, check_recipe_config
from workers.training.optimizers import build_optimizer
from workers.training.schedules import build_schedule
from workers.trial_config import TrialConfig


class Recipe:
    def __init__(self, cfg: TrialConfig, model: nn.Module, steps_per_epoch: int) -> None:
        check_recipe_config(cfg)
        optimizer_cfg, epochs = cfg.optimizer, cfg.trainer.epochs
        self.model = model
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = build_optimizer(optimizer_cfg, model.parameters())
        # T_avg, or None when this recipe does not average.
        self.averaging_start = averaging_start_epoch(optimizer_cfg, epochs)
        self._schedule = build_schedule(
            cfg.schedule, optimizer_cfg.lr, epochs, avg_start_epoch=self.averaging_start
        )
        self._average = IterateAverage(model.parameters()) if self.averaging_start is not None else None
        self._average_every = optimizer_cfg.averaging.every
        self._bn_batch_size = cfg.trainer.batch_size

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
        if self._average is not None and self._average_every == "step" and epoch >= self.averaging_start:
            self._average.update()

    def after_epoch(self, epoch: int) -> None:
        """Hook after each epoch (per-epoch iterate averaging)."""
        if self._average is not None and self._average_every == "epoch" and epoch + 1 >= self.averaging_start:
            self._average.update()

    @property
    def averaged_count(self) -> int:
        """How many iterates the average holds (0 without averaging)."""
        return 0 if self._average is None else self._average.count

    def averaged_model(self, train_inputs: torch.Tensor) -> Optional[nn.Module]:
        """The iterate average with BatchNorm statistics recomputed on ``train_inputs``, in eval mode, on the
        model's device; None while no iterate has been averaged. The training model is left untouched."""
        if self._average is None or self._average.count == 0:
            return None
        return averaged_copy(self.model, self._average, train_inputs, self._bn_batch_size)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self._average is not None:
            state["averaging"] = self._average.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self._average is not None:
            if "averaging" not in state:
                raise ValueError("the checkpoint has no iterate average, but this recipe averages iterates")
            self._average.load_state_dict(state["averaging"])
