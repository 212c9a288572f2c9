"""Iterate averaging (IA): the running arithmetic mean of the weights, and BatchNorm statistics to evaluate it.

BatchNorm's running statistics belong to the weights they were collected under, so the averaged weights get
their own: :func:`recompute_batchnorm` passes the training data through a copy of the model once.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import Tensor, nn


class IterateAverage:
    """``mean = (w_1 + ... + w_n) / n`` over the iterates passed to :meth:`update`, kept incrementally."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self._params = list(params)
        self.count = 0
        # Allocated at the first update, so that no memory is spent before averaging starts.
        self._mean: Optional[list[Tensor]] = None

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        if self._mean is None:
            self._mean = [p.detach().clone() for p in self._params]
        else:
            torch._foreach_lerp_(self._mean, self._params, 1.0 / self.count)

    @property
    def mean(self) -> Optional[list[Tensor]]:
        return self._mean

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self._mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mean = state["mean"]
        if mean is not None:
            if len(mean) != len(self._params) or any(m.shape != p.shape for m, p in zip(mean, self._params)):
                raise ValueError("the checkpoint's iterate average does not match this model's parameters")
            mean = [m.to(device=p.device, dtype=p.dtype, copy=True) for m, p in zip(mean, self._params)]
        self.count, self._mean = int(state["count"]), mean


@torch.no_grad()
def averaged_copy(model: nn.Module, average: IterateAverage, train_inputs: Tensor, batch_size: int) -> nn.Module:
    """A copy of ``model`` holding the averaged weights and BatchNorm statistics recomputed for them, in eval mode."""
    if average.mean is None:
        raise ValueError("no iterate has been averaged yet")
    averaged = copy.deepcopy(model)
    for param, mean in zip(averaged.parameters(), average.mean):
        param.copy_(mean)
        param.requires_grad_(False)
    recompute_batchnorm(averaged, train_inputs, batch_size)
    return averaged.eval()


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, inputs: Tensor, batch_size: int) -> None:
    """Replace every BatchNorm layer's running mean and variance by their average over one pass of ``inputs``.

    Only the BatchNorm layers are put in train mode: dropout stays off, so the statistics are those of the network
    that is evaluated, and no random numbers are drawn. Each batch's statistics are weighted by its size (momentum
    ``b / (seen + b)``), which is torch's cumulative average (``momentum=None``) made exact for a shorter last batch.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.train()
    device = next(model.parameters()).device
    seen = 0
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].to(device, non_blocking=True)
        for layer in layers:
            layer.momentum = len(batch) / (seen + len(batch))
        model(batch)
        seen += len(batch)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
        layer.eval()
