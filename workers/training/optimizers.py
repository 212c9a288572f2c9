"""Every ``optimizer=`` option in one registry: how it is built, its checks, and what its weight decay means.

Adding an optimizer is one :class:`OptimizerKind` entry here and its YAML in ``orchestrator/conf/optimizer/``
(extending ``_<name>_schema``, the entry's config class from :mod:`workers.trial_config`). The control plane
reads the same entries to validate every grid point before launch, and the spectrum job to know the L2 term, so
nothing else names optimizers. torch is imported by the builders only: this module stays importable without it.

Coupled L2 (sgd, nesterov, swa, adam) adds ``weight_decay * w`` to the gradient, the gradient of
``weight_decay/2 * ||w||^2``. Decoupled decay (adamw, gadam, gadamx) is configured as the paper grids it:
``weight_decay`` is the searched value, the decay already scaled by the initial learning rate, so torch's coefficient
is ``weight_decay / lr`` and each step shrinks the weights by ``lr_t * weight_decay / lr``: exactly ``weight_decay``
while the schedule is at lr.

Iterate averaging is not part of the optimizer's update: gadam = adamw, gadamx = partially adaptive adamw and
swa = sgd here, each with ``averaging.enabled: true``, which :class:`workers.training.recipe.Recipe` acts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from workers.trial_config import AdamConfig, AdamXConfig, OptimizerConfig, SGDConfig
from workers.training.rules import Rule, apply_rules, require_known

if TYPE_CHECKING:
    import torch

Params = Iterable["torch.nn.Parameter"]
AVERAGING_EVERY = ("epoch", "step")


@dataclass(frozen=True)
class OptimizerKind:
    # Its keys and their types: the schema its YAML option extends (``_<name>_schema``).
    config: type[OptimizerConfig]
    build: Callable[[OptimizerConfig, Params], "torch.optim.Optimizer"]
    # Range checks of its own keys, beyond lr and weight_decay, which every optimizer has.
    rules: tuple[Rule, ...]
    # weight_decay is decoupled decay scaled by lr, not the coupled L2 coefficient of the training objective.
    decoupled_decay: bool


def _sgd(cfg: OptimizerConfig, params: Params) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )


def _adam(cfg: OptimizerConfig, params: Params) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def _adamw(cfg: OptimizerConfig, params: Params) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay / cfg.lr
    )


def _adamx(cfg: OptimizerConfig, params: Params) -> "torch.optim.Optimizer":
    from workers.training.adamx import PartiallyAdaptiveAdamW

    return PartiallyAdaptiveAdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay / cfg.lr,
        p=cfg.p,
    )


_COMMON_RULES: tuple[Rule, ...] = (
    ("lr", lambda v: v > 0, "a number > 0"),
    ("weight_decay", lambda v: v >= 0, "a number >= 0"),
)
_SGD_RULES: tuple[Rule, ...] = (("momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),)
_ADAM_RULES: tuple[Rule, ...] = (
    ("betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("eps", lambda v: v > 0, "a number > 0"),
)

OPTIMIZERS: dict[str, OptimizerKind] = {
    "sgd": OptimizerKind(SGDConfig, _sgd, _SGD_RULES, decoupled_decay=False),
    # Nesterov's look-ahead needs momentum (torch refuses it without).
    "nesterov": OptimizerKind(SGDConfig, _sgd, (("momentum", lambda v: 0 < v < 1, "a number in (0, 1)"),
                                                  ("nesterov", lambda v: v is True, "true (it is what this optimizer is)")),
                              decoupled_decay=False),
    "swa": OptimizerKind(SGDConfig, _sgd, _SGD_RULES, decoupled_decay=False),
    "adam": OptimizerKind(AdamConfig, _adam, _ADAM_RULES, decoupled_decay=False),
    "adamw": OptimizerKind(AdamConfig, _adamw, _ADAM_RULES, decoupled_decay=True),
    "gadam": OptimizerKind(AdamConfig, _adamw, _ADAM_RULES, decoupled_decay=True),
    "gadamx": OptimizerKind(AdamXConfig, _adamx, _ADAM_RULES + (("p", lambda v: 0 < v <= 0.5, "a number in (0, 0.5]"),),
                            decoupled_decay=True),
}


def check_optimizer(cfg: OptimizerConfig) -> None:
    require_known("optimizer", cfg.name, OPTIMIZERS)
    apply_rules("optimizer", cfg, _COMMON_RULES + OPTIMIZERS[cfg.name].rules)
    averaging = cfg.averaging
    if averaging.every not in AVERAGING_EVERY:
        raise ValueError(f"optimizer.averaging.every={averaging.every}: must be epoch or step")
    start = averaging.start_epoch
    if start is not None and start < 0:
        raise ValueError(f"optimizer.averaging.start_epoch={start}: must be null or an integer >= 0")


def build_optimizer(cfg: OptimizerConfig, params: Params) -> "torch.optim.Optimizer":
    check_optimizer(cfg)
    return OPTIMIZERS[cfg.name].build(cfg, params)


def l2_coefficient(cfg: OptimizerConfig) -> float:
    """gamma of the coupled L2 term gamma/2 ||w||^2 in the training objective (0 for decoupled decay)."""
    return 0.0 if OPTIMIZERS[cfg.name].decoupled_decay else cfg.weight_decay
