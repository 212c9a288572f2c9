"""The one call the orchestrator makes: settings in, spectrum out, in process or over a Ray gang."""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import torch
from torch import nn

from workers.curvature.kinds import OPERATOR_KINDS
from workers.curvature.network import LossFn
from workers.curvature.result import SpectrumResult
from workers.curvature.sharded import ShardedCurvatureOperator
from workers.curvature.slq import Progress, slq
from workers.devices import resolve_device
from workers.config_rules import SPECTRUM_DEVICES, SPECTRUM_RULES
from workers.training.rules import apply_rules

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SpectrumSettings:
    """How to compute one spectrum; validated on construction.

    num_workers=1 computes in this process on `device`; num_workers>1 shards the data over that many Ray
    actors, each with cpus_per_worker CPUs (and torch threads) and gpus_per_worker GPUs. batch_size chunks
    the data inside each product (memory, and the batches BatchNorm sees in train mode); max_samples takes a
    fixed subsample drawn with `seed`. basis_device="cpu" keeps the Lanczos basis (steps x P numbers, 11.7 GB
    for 80 float32 steps of WRN-28x10) in host memory while products stay on `device`.
    """

    steps: int = 80
    num_vectors: int = 5
    seed: int = 0
    distribution: str = "rademacher"
    operator: str = "hessian"
    bn_mode: str = "eval"
    dtype: str = "float32"
    num_workers: int = 1
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1
    max_samples: int | None = None
    batch_size: int = 1024
    device: str = "auto"
    basis_device: str | None = None

    def __post_init__(self) -> None:
        # The sweep's own rules for its ``spectrum`` group, so that a job accepted before launch is accepted here.
        apply_rules("spectrum", self, SPECTRUM_RULES)
        if self.batch_size is None:
            raise ValueError("spectrum.batch_size=null: the settings take the resolved batch size (an integer >= 1; "
                             "workers.spectrum_protocol.batch_size_of resolves null)")
        if self.device not in SPECTRUM_DEVICES:
            raise ValueError(f"device={self.device}: must be one of {', '.join(SPECTRUM_DEVICES)}")
        if self.num_workers > 1 and self.device != "auto" and (self.device == "cuda") != (self.gpus_per_worker > 0):
            raise ValueError(
                f"device={self.device!r} contradicts gpus_per_worker={self.gpus_per_worker} with "
                f"num_workers={self.num_workers}: sharded workers use GPUs exactly when gpus_per_worker > 0"
            )


def compute_spectrum(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: SpectrumSettings = SpectrumSettings(),
    progress: Progress | None = None,
) -> SpectrumResult:
    """SLQ spectrum of the Hessian (or GGN) of the mean loss over (inputs, targets) at the model's weights.

    With `progress`, a killed computation continues where it was saved (`slq`; per seed vector when sharded)."""
    inputs, targets = subsample(inputs, targets, settings.max_samples, settings.seed)
    options = {"bn_mode": settings.bn_mode, "dtype": DTYPES[settings.dtype], "batch_size": settings.batch_size}
    spectrum = {"steps": settings.steps, "num_vectors": settings.num_vectors, "seed": settings.seed,
                "distribution": settings.distribution, "basis_device": settings.basis_device}
    if settings.num_workers == 1:
        operator = OPERATOR_KINDS[settings.operator](
            model, loss_fn, (inputs, targets), device=resolve_device(settings.device), **options
        )
        return slq(operator, **spectrum, progress=progress)
    with ShardedCurvatureOperator(
        model, loss_fn, inputs, targets, kind=settings.operator, num_workers=settings.num_workers,
        cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker, **options,
    ) as operator:
        return dataclasses.replace(operator.spectrum(**spectrum, progress=progress), nodes=operator.worker_nodes())


def subsample(
    inputs: torch.Tensor, targets: torch.Tensor, max_samples: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded subset of max_samples samples, kept in data order (all of them when None or more)."""
    if max_samples is None or max_samples >= len(inputs):
        return inputs, targets
    chosen = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))[:max_samples].sort().values
    return inputs[chosen], targets[chosen]
