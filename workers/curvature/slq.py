"""Stochastic Lanczos quadrature: Lanczos from several seeded random vectors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from workers.curvature.lanczos import LanczosResult, LanczosState, lanczos
from workers.curvature.operators import CurvatureOperator
from workers.curvature.result import SpectrumResult
from workers.curvature.validation import require_choice, require_int

DISTRIBUTIONS = ("rademacher", "gaussian")


@dataclass(frozen=True)
class SLQState:
    """SLQ part way: the finished seed vectors' runs, in order, and the next one's Lanczos state if saved."""

    completed: tuple[LanczosResult, ...] = ()
    partial: LanczosState | None = None


class Progress(Protocol):
    """Where an SLQ run keeps its state so that a killed one can continue: `load` what a previous attempt saved
    (None: start afresh); `save` is called after each finished seed vector and, every `every` steps, with the
    current vector's state (a store may drop `partial` when its basis is too large to keep)."""

    every: int

    def load(self) -> SLQState | None: ...

    def save(self, state: SLQState) -> None: ...


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
    vectors: range | None = None,
    progress: Progress | None = None,
) -> SpectrumResult:
    """`num_vectors` Lanczos runs of `steps` steps, one per seed vector (see `lanczos` for basis_device).

    Under a sliced layout every rank draws the same whole seed vectors and Lanczos keeps its slice of each.
    `vectors` computes only those seed vectors of the `num_vectors` (the runs of the others are left out of
    the result), so that a driver can checkpoint between them. With `progress`, the runs continue from what it
    holds: finished vectors are not computed again, and the current one continues from its saved step.
    """
    check_slq_arguments(steps, num_vectors, seed, distribution)
    wanted = range(num_vectors) if vectors is None else vectors
    state = (progress.load() if progress is not None else None) or SLQState()
    runs = list(state.completed)
    for index, z in enumerate(seed_vectors(op.size, num_vectors, seed, distribution)):
        if index not in wanted or index - wanted.start < len(runs):
            continue
        resume = state.partial if index - wanted.start == len(state.completed) else None
        done = tuple(runs)
        save = (lambda partial: progress.save(SLQState(done, partial))) if progress is not None else None
        runs.append(lanczos(op, steps, z, basis_device=basis_device, resume=resume, checkpoint=save,
                            checkpoint_every=progress.every if progress is not None else 10))
        if progress is not None:
            progress.save(SLQState(tuple(runs)))
    return SpectrumResult(runs=tuple(runs), size=op.size, steps=steps, seed=seed, distribution=distribution)


def check_slq_arguments(steps: int, num_vectors: int, seed: int, distribution: str) -> None:
    """One-line errors for bad SLQ arguments, also raised on a gang's driver before any worker starts."""
    require_int("steps", steps, 1)
    require_int("num_vectors", num_vectors, 1)
    require_int("seed", seed, 0)
    require_choice("distribution", distribution, DISTRIBUTIONS)
