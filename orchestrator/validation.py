"""Range checks a type cannot express, on every composed grid point, before anything is launched.

The training groups (model, dataset, optimizer, schedule) are checked by the rules the workers themselves apply
(:mod:`workers.training.config_checks`, which imports no torch); the rest here.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from orchestrator.errors import UserError
from orchestrator.identity import dotted
from workers.training.config_checks import check_training_config

Check = tuple[str, Callable[[Any], bool], str]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")

CHECKS: tuple[Check, ...] = (
    ("trainer.epochs", lambda v: v >= 1, "an integer >= 1"),
    ("trainer.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("trainer.eval_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("trainer.device", lambda v: bool(_DEVICE.match(v)), "auto, cpu, cuda or cuda:N"),
    ("dataset.test_fraction", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("cluster.num_cpus", lambda v: v > 0, "a number > 0"),
    ("cluster.num_gpus", lambda v: v >= 0, "a number >= 0"),
    ("cluster.max_retries", lambda v: v >= 0, "an integer >= 0"),
    ("cluster.local_num_cpus", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("checkpoint.every", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint.keep", lambda v: v >= 1, "an integer >= 1"),
    ("tracking.heartbeat_timeout", lambda v: v > 0, "a number of seconds > 0"),
    ("tracking.experiment", lambda v: bool(str(v).strip()), "a non-empty name"),
    ("spectrum.steps", lambda v: v >= 2, "an integer >= 2"),
    ("spectrum.num_vectors", lambda v: v >= 1, "an integer >= 1"),
    ("spectrum.distribution", lambda v: v in ("rademacher", "gaussian"), "rademacher or gaussian"),
    ("spectrum.operator", lambda v: v in ("hessian", "ggn"), "hessian or ggn"),
    ("spectrum.bn_mode", lambda v: v in ("train", "eval"), "train or eval"),
    ("spectrum.dtype", lambda v: v in ("float32", "float64"), "float32 or float64"),
    ("spectrum.max_samples", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("spectrum.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("spectrum.num_workers", lambda v: v >= 1, "an integer >= 1"),
    ("spectrum.gpus_per_worker", lambda v: v >= 0, "a number >= 0"),
    ("spectrum.cpus_per_worker", lambda v: v > 0, "a number > 0"),
)


def validate(config: Mapping[str, Any]) -> None:
    """Raise a one-line ``UserError`` naming the first bad key, its value and what is allowed."""
    flat = dotted(config)
    for key, ok, allowed in CHECKS:
        if key in flat and not ok(flat[key]):
            raise UserError(f"{key}={_show(flat[key])}: must be {allowed}")
    try:
        check_training_config(config)
    except ValueError as error:
        raise UserError(str(error)) from None
    epochs = config["trainer"]["epochs"]
    for epoch in config["spectrum"]["at_epochs"]:
        if not 1 <= epoch <= epochs:
            raise UserError(f"spectrum.at_epochs={config['spectrum']['at_epochs']}: each epoch must be in [1, {epochs}]")


def _show(value: Any) -> str:
    return "null" if value is None else str(value)
