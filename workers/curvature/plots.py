"""The spectral density as a PNG, log-scale density axis as in the paper's figures."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workers.curvature.result import SpectrumResult

# The log axis shows this many decades below the peak; below that lies only broadening's tail.
_DECADES = 8


def plot_density(
    result: SpectrumResult,
    path: str | Path,
    *,
    title: str | None = None,
    sigma: float | None = None,
    points: int = 1000,
) -> Path:
    """Write the broadened density over [lambda_min, lambda_max] plus margins to `path`.

    sigma defaults to 1% of the spectral range. A Figure on the Agg canvas, not pyplot, so plotting inside a
    Ray worker or a thread neither needs a display nor touches global state.
    """
    span = result.lambda_max - result.lambda_min
    sigma = sigma if sigma is not None else (span / 100 if span > 0 else max(abs(result.lambda_max), 1.0) / 100)
    grid = torch.linspace(result.lambda_min - 10 * sigma, result.lambda_max + 10 * sigma, points, dtype=torch.float64)
    density = result.density(grid, sigma)
    floor = density.max().item() * 10.0**-_DECADES
    figure = Figure(figsize=(6, 4), layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.semilogy(grid.numpy(), density.clamp_min(floor).numpy())
    axes.set_ylim(bottom=floor)
    axes.set_xlabel("eigenvalue")
    axes.set_ylabel("spectral density")
    if title:
        axes.set_title(title)
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path
