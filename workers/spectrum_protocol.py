"""What decides a spectrum's numbers, as a short hash: a result is keyed by (trial, checkpoint epoch, protocol).

Shared by both planes (no torch here): the orchestrator decides which results exist and which to compute, the
worker records each result under its protocol, and the parent run's figures never put two protocols in one
comparison.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

from workers.trial_config import TrialConfig

ITERATE, AVERAGE = "iterate", "average"
WEIGHTS = (ITERATE, AVERAGE)
# `spectrum.weights`: which model's Hessian; null means both when the optimizer averages iterates, else the iterate.
WEIGHT_CHOICES = (*WEIGHTS, "both")
# The chunk size of products in BatchNorm eval mode, where it only bounds memory.
EVAL_BATCH_SIZE = 1024
# Metric names of one result; averaged weights' carry AVERAGE_SUFFIX (lambda_max_avg), as training's test_acc_avg.
METRICS = ("lambda_max", "lambda_min", "trace_estimate", "lanczos_steps")
AVERAGE_SUFFIX = "_avg"


@dataclass(frozen=True)
class SpectrumProtocol:
    """Everything that decides a spectrum of a given checkpoint. Not here: where it runs (workers, devices, where
    the basis lives) and, in BatchNorm eval mode, the batch size (chunking a sum changes no operator)."""

    operator: str
    bn_mode: str
    max_samples: Optional[int]
    # In BatchNorm train mode the batches are part of the operator; None in eval mode.
    batch_size: Optional[int]
    steps: int
    num_vectors: int
    distribution: str
    seed: int
    dtype: str
    weights: str

    @property
    def id(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def description(self) -> str:
        """One line a person can read (the tag beside the hash)."""
        samples = "all samples" if self.max_samples is None else f"{self.max_samples} samples"
        batches = f", batches of {self.batch_size}" if self.batch_size is not None else ""
        return (f"{self.operator}, BN {self.bn_mode}{batches}, {samples}, {self.steps} steps x {self.num_vectors} "
                f"{self.distribution} vectors, seed {self.seed}, {self.dtype}, {self.weights} weights")

    def metric_name(self, metric: str, home: bool) -> str:
        """``lambda_max`` (``lambda_max_avg``) for the trial's own protocol, ``lambda_max.<id>`` for any other, so
        that one metric history never holds two protocols."""
        name = metric + (AVERAGE_SUFFIX if self.weights == AVERAGE else "")
        return name if home else f"{name}.{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


def averages_iterates(config: TrialConfig) -> bool:
    return config.optimizer.averaging.enabled


def weights_of(config: TrialConfig) -> tuple[str, ...]:
    """The models whose spectra ``spectrum.weights`` asks for, in a fixed order."""
    choice = config.spectrum.weights
    if choice is None:
        return WEIGHTS if averages_iterates(config) else (ITERATE,)
    if choice not in WEIGHT_CHOICES:
        raise ValueError(f"spectrum.weights={choice}: must be one of {', '.join(WEIGHT_CHOICES)} or null")
    if choice != ITERATE and not averages_iterates(config):
        raise ValueError(f"spectrum.weights={choice}: optimizer {config.optimizer.name} does not average "
                         "iterates; use iterate (or an optimizer with averaging.enabled)")
    return WEIGHTS if choice == "both" else (choice,)


def batch_size_of(config: TrialConfig) -> int:
    """``spectrum.batch_size``; null means the trial's own ``trainer.batch_size`` in BatchNorm train mode (the
    operator the network was trained under) and EVAL_BATCH_SIZE in eval mode."""
    spectrum = config.spectrum
    if spectrum.batch_size is not None:
        return spectrum.batch_size
    return config.trainer.batch_size if spectrum.bn_mode == "train" else EVAL_BATCH_SIZE


def protocols_of(config: TrialConfig) -> tuple[SpectrumProtocol, ...]:
    """One protocol per model ``spectrum.weights`` asks for, from a trial's resolved config."""
    spectrum = config.spectrum
    train_mode = spectrum.bn_mode == "train"
    return tuple(
        SpectrumProtocol(
            operator=spectrum.operator, bn_mode=spectrum.bn_mode, max_samples=spectrum.max_samples,
            batch_size=batch_size_of(config) if train_mode else None, steps=spectrum.steps,
            num_vectors=spectrum.num_vectors, distribution=spectrum.distribution, seed=spectrum.seed,
            dtype=spectrum.dtype, weights=weights,
        )
        for weights in weights_of(config)
    )


def home_protocols(stored_config: TrialConfig) -> frozenset[str]:
    """Ids of the protocols whose results take the plain metric names in a run: those of the spectrum settings
    the run was created with (the sweep's; defaults when it had none). The stored config never changes, so
    the plain names never change meaning. Averaging is on or off with the trial, so both weights count."""
    optimizer = stored_config.optimizer
    both = replace(stored_config, spectrum=replace(stored_config.spectrum, weights=None),
                   optimizer=replace(optimizer, averaging=replace(optimizer.averaging, enabled=True)))
    return frozenset(p.id for p in protocols_of(both))
