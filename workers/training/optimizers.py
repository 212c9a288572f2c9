"""Optimizers by name, built from an ``optimizer`` config group option.

Coupled L2 (sgd, swa, adam) adds ``weight_decay * w`` to the gradient, the gradient of ``weight_decay/2 * ||w||^2``.
Decoupled decay (adamw, gadam, gadamx) is configured as the paper grids it: ``weight_decay`` is the searched value,
the decay already scaled by the initial learning rate, so torch's coefficient is ``weight_decay / lr`` and each step
shrinks the weights by ``lr_t * weight_decay / lr``: exactly ``weight_decay`` while the schedule is at lr.

Iterate averaging is not part of the optimizer's update: gadam = adamw, gadamx = partially adaptive adamw and
swa = sgd here, each with ``averaging.enabled: true``, which :class:`workers.training.recipe.Recipe` acts on.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

from workers.training.adamx import PartiallyAdaptiveAdamW
from workers.training.config_checks import check_optimizer

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


def _adamx(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    return PartiallyAdaptiveAdamW(
        params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"] / cfg["lr"],
        p=cfg["p"],
    )


BUILDERS: dict[str, Callable[[Mapping, Params], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "swa": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "gadam": _adamw,
    "gadamx": _adamx,
}


def build_optimizer(cfg: Mapping, params: Params) -> torch.optim.Optimizer:
    check_optimizer(cfg)
    return BUILDERS[cfg["name"]](cfg, params)
