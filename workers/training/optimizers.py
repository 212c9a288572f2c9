"""Optimizers by name, built from an ``optimizer`` config group option.

Coupled L2 (sgd, adam) adds ``weight_decay * w`` to the gradient, the gradient of ``weight_decay/2 * ||w||^2``.
Decoupled decay (adamw) is configured as the paper grids it: ``weight_decay`` is the searched value, the decay
already scaled by the initial learning rate, so torch's coefficient is ``weight_decay / lr``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

Params = Iterable[torch.nn.Parameter]


def _sgd(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"]
    )


def _adam(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"])


def _adamw(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"] / cfg["lr"]
    )


BUILDERS: dict[str, Callable[[Mapping, Params], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def build_optimizer(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    name = cfg["name"]
    if name not in BUILDERS:
        raise ValueError(f"optimizer.name={name!r} is not known; allowed: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](cfg, params)
