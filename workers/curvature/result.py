"""What SLQ returns: per-seed-vector quadratures and the estimates derived from them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from workers.curvature.density import broadened_density
from workers.curvature.lanczos import LanczosResult


@dataclass(frozen=True, eq=False)
class SpectrumResult:
    """Stochastic Lanczos quadrature of an operator of `size` P from len(runs) seed vectors.

    Each run's Ritz values t_j and weights w_j discretise the seed vector's spectral measure; the estimates
    below average them: E[v^T f(H) v] = Tr f(H) / P for unit v drawn as zero-mean unit-variance z / |z|.
    """

    runs: tuple[LanczosResult, ...]
    size: int
    steps: int
    seed: int
    distribution: str
    # The Ray nodes whose workers computed the products, by rank (empty for one process).
    nodes: tuple[str, ...] = ()

    @property
    def ritz_values(self) -> tuple[torch.Tensor, ...]:
        return tuple(run.ritz_values for run in self.runs)

    @property
    def weights(self) -> tuple[torch.Tensor, ...]:
        return tuple(run.weights for run in self.runs)

    @property
    def alphas(self) -> tuple[torch.Tensor, ...]:
        return tuple(run.alphas for run in self.runs)

    @property
    def betas(self) -> tuple[torch.Tensor, ...]:
        return tuple(run.betas for run in self.runs)

    @property
    def steps_taken(self) -> tuple[int, ...]:
        """Lanczos steps each run actually took: fewer than `steps` only where its Krylov space became
        invariant (or `steps` exceeded the size), so a short run is visible next to the numbers it produced."""
        return tuple(run.steps_taken for run in self.runs)

    @property
    def lambda_max(self) -> float:
        return max(run.ritz_values.max().item() for run in self.runs)

    @property
    def lambda_min(self) -> float:
        return min(run.ritz_values.min().item() for run in self.runs)

    @property
    def trace_estimate(self) -> float:
        return self.size * self._quadrature(lambda t: t).mean().item()

    @property
    def trace_stderr(self) -> float:
        """Standard error of `trace_estimate` over seed vectors (NaN from a single vector)."""
        per_vector = self._quadrature(lambda t: t)
        if len(per_vector) < 2:
            return math.nan
        return self.size * (per_vector.std() / math.sqrt(len(per_vector))).item()

    @property
    def trace_sq_estimate(self) -> float:
        """Tr(H^2), i.e. the squared Frobenius norm."""
        return self.size * self._quadrature(lambda t: t**2).mean().item()

    @property
    def negative_mass(self) -> float:
        """Mean spectral weight on negative Ritz values: how non-convex the point looks."""
        return self._quadrature(lambda t: (t < 0).to(t.dtype)).mean().item()

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        return broadened_density(self.ritz_values, self.weights, grid, sigma)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values: settings, estimates and each run's quadrature and tridiagonal."""
        stderr = self.trace_stderr
        return {
            "size": self.size,
            "steps": self.steps,
            "steps_taken": list(self.steps_taken),
            "num_vectors": len(self.runs),
            "seed": self.seed,
            "distribution": self.distribution,
            "nodes": list(self.nodes),
            "lambda_max": self.lambda_max,
            "lambda_min": self.lambda_min,
            "trace_estimate": self.trace_estimate,
            "trace_stderr": None if math.isnan(stderr) else stderr,
            "trace_sq_estimate": self.trace_sq_estimate,
            "negative_mass": self.negative_mass,
            "runs": [
                {
                    "ritz_values": run.ritz_values.tolist(),
                    "weights": run.weights.tolist(),
                    "alphas": run.alphas.tolist(),
                    "betas": run.betas.tolist(),
                }
                for run in self.runs
            ],
        }

    def _quadrature(self, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """sum_j w_j f(t_j) for each seed vector."""
        return torch.stack([(run.weights * f(run.ritz_values)).sum() for run in self.runs])
