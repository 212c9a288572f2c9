"""Spectral density from quadrature nodes and weights by Gaussian broadening."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def broadened_density(
    nodes: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], grid: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Mean over seed vectors of sum_j w_j N(x; t_j, sigma^2) on `grid`, scaled to integrate to 1 over it.

    Normalising on the grid (trapezoid rule) rather than analytically makes a truncated grid or a coarse one
    still a density, as the log-scale plots need.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.dim() != 1 or len(grid) < 2:
        raise ValueError(f"grid of shape {tuple(grid.shape)} is not a 1-D grid of at least 2 points")
    if not sigma > 0:
        raise ValueError(f"sigma={sigma!r} is invalid; it must be > 0")
    per_vector = [
        (w * torch.exp(-0.5 * ((grid[:, None] - t) / sigma) ** 2)).sum(dim=1) / (sigma * math.sqrt(2 * math.pi))
        for t, w in zip(nodes, weights, strict=True)
    ]
    density = torch.stack(per_vector).mean(dim=0)
    mass = torch.trapezoid(density, grid).item()
    if not mass > 0:
        raise ValueError(
            f"the grid [{grid[0].item():.3g}, {grid[-1].item():.3g}] holds no spectral mass at sigma={sigma}; "
            "widen it or raise sigma"
        )
    return density / mass
