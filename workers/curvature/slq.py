"""Stochastic Lanczos quadrature: Lanczos from several seeded random vectors."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from workers.curvature.lanczos import lanczos
from workers.curvature.operators import CurvatureOperator
from workers.curvature.result import SpectrumResult
from workers.curvature.validation import require_choice, require_int

DISTRIBUTIONS = ("rademacher", "gaussian")


def seed_vectors(size: int, count: int, seed: int, distribution: str) -> Iterator[torch.Tensor]:
    """Zero-mean unit-variance vectors (float64, CPU), drawn on the CPU so a seed means the same vectors on
    every device."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        if distribution == "rademacher":
            yield torch.randint(0, 2, (size,), generator=generator).to(torch.float64).mul_(2).sub_(1)
        else:
            yield torch.randn(size, generator=generator, dtype=torch.float64)


def slq(
    op: CurvatureOperator,
    steps: int,
    num_vectors: int,
    seed: int = 0,
    distribution: str = "rademacher",
    *,
    basis_device: torch.device | str | None = None,
) -> SpectrumResult:
    """`num_vectors` Lanczos runs of `steps` steps, one per seed vector (see `lanczos` for basis_device).

    Under a sliced layout every rank draws the same whole seed vectors and Lanczos keeps its slice of each.
    """
    check_slq_arguments(steps, num_vectors, seed, distribution)
    runs = tuple(
        lanczos(op, steps, z, basis_device=basis_device)
        for z in seed_vectors(op.size, num_vectors, seed, distribution)
    )
    return SpectrumResult(runs=runs, size=op.size, steps=steps, seed=seed, distribution=distribution)


def check_slq_arguments(steps: int, num_vectors: int, seed: int, distribution: str) -> None:
    """One-line errors for bad SLQ arguments, also raised on a gang's driver before any worker starts."""
    require_int("steps", steps, 1)
    require_int("num_vectors", num_vectors, 1)
    require_int("seed", seed, 0)
    require_choice("distribution", distribution, DISTRIBUTIONS)
