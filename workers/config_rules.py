"""The rules a trial config must meet that its types cannot express, in one place for both planes.

The control plane applies them to every grid point before anything is launched (``orchestrator.validation``);
the workers apply the same rules where they read the values (the training groups' builders call
:mod:`workers.training.config_checks`, which these extend). Pure Python, no torch, so the control plane may
import it. Each check raises a one-line ``ValueError`` naming the key, its value and what is allowed.

The spectrum job's settings apply :data:`SPECTRUM_RULES` themselves; where a rule restates what the compute plane
finds only as it runs (the spectrum job's devices and data shards), ``tests/test_config_rules.py`` pins the two to
agree.
"""

from __future__ import annotations

import builtins
import importlib
import math
import re
from typing import Any, Optional, Sequence

from workers.spectrum_protocol import batch_size_of
from workers.training.config_checks import check_model_fits_dataset, check_training_config, training_examples
from workers.training.rules import Rule, apply_rules, show
from workers.trial_config import TrialConfig


# np.random.seed, which every trial calls, takes 0 .. 2**32 - 1.
SEED_MAX = 2**32 - 1


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but steps=True is a slip, not a request for one step.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SEED = (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, f"an integer in [0, {SEED_MAX}] (what numpy accepts as a seed)")
_AT_LEAST_ONE = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_NULL_OR_AT_LEAST_ONE = (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1")

TRAINER_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
# The devices the spectrum job computes on; it reads trainer.device with cuda:N taken as cuda, the first GPU its
# Ray task is given.
SPECTRUM_DEVICES = ("auto", "cpu", "cuda")
# Where the Lanczos basis may live: with the products, or in host memory.
BASIS_DEVICES = (None, "cpu")
# A search's pruners (orchestrator/study.py): none, or optuna's MedianPruner.
PRUNERS = (None, "median")

# The ``spectrum`` group's own rules, by key within the group. The spectrum job's settings
# (workers.curvature.job.SpectrumSettings) apply these same rules, so a spectrum accepted before launch is accepted
# by the job after training. Two steps at least: one Lanczos step has a single Ritz value, no spectrum to speak of.
SPECTRUM_RULES: tuple[Rule, ...] = (
    ("steps", lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    ("num_vectors", *_AT_LEAST_ONE),
    ("seed", *_SEED),
    ("distribution", lambda v: v in ("rademacher", "gaussian"), "rademacher or gaussian"),
    ("operator", lambda v: v in ("hessian", "ggn"), "hessian or ggn"),
    ("bn_mode", lambda v: v in ("train", "eval"), "train or eval"),
    ("dtype", lambda v: v in ("float32", "float64"), "float32 or float64"),
    ("max_samples", *_NULL_OR_AT_LEAST_ONE),
    ("batch_size", *_NULL_OR_AT_LEAST_ONE),
    ("num_workers", *_AT_LEAST_ONE),
    ("gpus_per_worker", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("cpus_per_worker", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("basis_device", lambda v: v in BASIS_DEVICES, "null or cpu"),
)

KEY_RULES: tuple[Rule, ...] = (
    ("trainer.epochs", *_AT_LEAST_ONE),
    ("trainer.batch_size", *_AT_LEAST_ONE),
    ("trainer.eval_batch_size", *_AT_LEAST_ONE),
    ("trainer.seed", *_SEED),
    ("trainer.device", lambda v: bool(TRAINER_DEVICE.match(v)), "auto, cpu, cuda, cuda:N or mps"),
    ("dataset.test_fraction", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("dataset.split_seed", *_SEED),
    ("checkpoint.every", *_AT_LEAST_ONE),
    ("checkpoint.keep", *_AT_LEAST_ONE),
    *((f"spectrum.{key}", ok, allowed) for key, ok, allowed in SPECTRUM_RULES),
    ("spectrum.progress_every", lambda v: v >= 0, "an integer >= 0 (0: never save progress)"),
    ("spectrum.progress_basis_mb", lambda v: v >= 0, "a number of MB >= 0"),
    ("sweep.pruner", lambda v: v in PRUNERS, "null or " + " or ".join(p for p in PRUNERS if p)),
    ("sweep.pruner_startup_trials", lambda v: v >= 0, "an integer >= 0"),
    ("sweep.pruner_warmup_epochs", lambda v: v >= 0, "an integer >= 0"),
)


def _lookup(config: TrialConfig, dotted_key: str) -> Any:
    node: Any = config
    for part in dotted_key.split("."):
        node = getattr(node, part)
    return node


def check_keys(config: TrialConfig, rules: Sequence[Rule] = KEY_RULES) -> None:
    """Each key's own range."""
    for key, ok, allowed in rules:
        value = _lookup(config, key)
        if not ok(value):
            raise ValueError(f"{key}={show(value)}: must be {allowed}")


def check_config(config: TrialConfig) -> None:
    """Every rule on one trial config that needs no knowledge of the data: keys, training groups, retries."""
    check_keys(config)
    check_training_config(config)
    check_retry_exceptions(config.cluster.retry_exceptions)
    epochs = config.trainer.epochs
    at_epochs = config.spectrum.at_epochs
    if any(not 1 <= epoch <= epochs for epoch in at_epochs):
        raise ValueError(f"spectrum.at_epochs={show(at_epochs)}: each epoch must be in [1, {epochs}]")
    check_pruner(config)


def check_pruner(config: TrialConfig) -> None:
    """A pruner judges the epochs after its warm-up, and a trial it prunes stops at its next epoch, which must not be
    its last: otherwise it could never stop a trial."""
    epochs, pruner, warmup = config.trainer.epochs, config.sweep.pruner, config.sweep.pruner_warmup_epochs
    if pruner is None or warmup + 3 <= epochs:
        return
    why = ("could never stop a trial (it judges the epochs after the warm-up and stops a trial at its next epoch, "
           "before the last)")
    if epochs >= 3:
        raise ValueError(f"sweep.pruner_warmup_epochs={warmup}: with trainer.epochs={epochs} the pruner {why}; "
                         f"allowed: at most {epochs - 3}, or trainer.epochs >= {warmup + 3}")
    raise ValueError(f"trainer.epochs={epochs}: sweep.pruner={pruner} {why}; allowed with a pruner: trainer.epochs "
                     f">= {warmup + 3}")


def check_fits(config: TrialConfig) -> None:
    """How the groups of a whole trial config fit together: the model its data, the spectrum job its device and
    data. (`sweep spectrum` composes no trial, so it checks its jobs' stored configs with check_spectrum_job.)"""
    check_model_fits_dataset(config.model, config.dataset)
    if config.spectrum.enabled:
        check_spectrum_job(config)


# --- the spectrum job ----------------------------------------------------------------------------------------
def spectrum_device(trainer_device: str) -> str:
    """The device the spectrum job computes on for a trial's ``trainer.device``."""
    return "cuda" if trainer_device.startswith("cuda") else trainer_device


def check_spectrum_job(config: TrialConfig) -> None:
    """What the spectrum job would refuse only once it starts, after training: its device and its data shards."""
    apply_rules("spectrum", config.spectrum, SPECTRUM_RULES)
    spectrum, trainer_device = config.spectrum, config.trainer.device
    device = spectrum_device(trainer_device)
    if device not in SPECTRUM_DEVICES:
        raise ValueError(f"trainer.device={trainer_device}: the spectrum job (spectrum.enabled) computes on auto, "
                         "cpu or cuda; allowed with spectra: auto, cpu, cuda or cuda:N")
    workers, gpus = spectrum.num_workers, spectrum.gpus_per_worker
    if workers > 1 and device != "auto" and (device == "cuda") != (gpus > 0):
        wanted = "> 0" if device == "cuda" else "0"
        raise ValueError(
            f"trainer.device={trainer_device}: a sharded spectrum (spectrum.num_workers={workers}) computes on GPUs "
            f"exactly when spectrum.gpus_per_worker > 0, and it is {show(gpus)}; allowed: trainer.device=auto, or "
            f"spectrum.gpus_per_worker {wanted} with this device"
        )
    check_shards(config)


def check_shards(config: TrialConfig) -> None:
    """Each of spectrum.num_workers shards holds whole batches of spectrum.batch_size (workers.curvature.sharded)."""
    spectrum = config.spectrum
    workers = spectrum.num_workers
    if workers == 1:
        return
    examples = training_examples(config.dataset)
    if spectrum.max_samples is not None:
        examples = min(examples, spectrum.max_samples)
    batch_size = batch_size_of(config)
    batches = math.ceil(examples / batch_size)
    if workers > batches:
        raise ValueError(
            f"spectrum.num_workers={workers}: the spectrum's {examples} training examples (dataset="
            f"{config.dataset.name}, spectrum.max_samples={show(spectrum.max_samples)}) make only {batches} "
            f"batch(es) of spectrum.batch_size={batch_size}, and each worker needs at least one; allowed: "
            f"at most {batches}, or a smaller spectrum.batch_size"
        )


# --- retries -------------------------------------------------------------------------------------------------
def exception_class(name: str) -> Optional[type[BaseException]]:
    """The exception class a ``cluster.retry_exceptions`` entry names: a builtin (``ConnectionError``) or a dotted
    name importable here (``urllib.error.URLError``); None when it names none."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    found: Any = None
    if len(parts) == 1:
        found = getattr(builtins, name, None)
    else:
        for split in range(len(parts) - 1, 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            for attribute in parts[split:]:
                found = getattr(found, attribute, None)
            break
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def check_retry_exceptions(names: Sequence[str]) -> None:
    for name in names:
        if exception_class(name) is None:
            raise ValueError(
                f"cluster.retry_exceptions={show(list(names))}: {name} names no exception class; allowed: builtin "
                "exception names (ConnectionError, TimeoutError, ...) or importable dotted names (module.ErrorClass)"
            )


def is_retryable(error: BaseException, names: Sequence[str]) -> bool:
    """Whether ``cluster.retry_exceptions`` lists the error's class or one of its bases."""
    classes = tuple(filter(None, map(exception_class, names)))
    return isinstance(error, classes)
