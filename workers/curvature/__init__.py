"""Curvature engine: operators that only know matvec, algorithms that only see operators.

`plot_density` lives in `workers.curvature.plots` so that importing the engine does not import matplotlib.
"""

from workers.curvature.ggn import GGNOperator
from workers.curvature.hessian import HessianOperator
from workers.curvature.job import SpectrumSettings, compute_spectrum
from workers.curvature.lanczos import LanczosResult, lanczos
from workers.curvature.operators import CurvatureOperator, LambdaOperator
from workers.curvature.result import SpectrumResult
from workers.curvature.sharded import ShardedCurvatureOperator
from workers.curvature.slq import slq

__all__ = [
    "CurvatureOperator",
    "GGNOperator",
    "HessianOperator",
    "LambdaOperator",
    "LanczosResult",
    "ShardedCurvatureOperator",
    "SpectrumResult",
    "SpectrumSettings",
    "compute_spectrum",
    "lanczos",
    "slq",
]
