"""Lanczos with full re-orthogonalisation, and the Gauss quadrature its tridiagonal matrix defines."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from workers.curvature.operators import CurvatureOperator
from workers.curvature.validation import require_int

# Kahan-Parlett "twice is enough": a Gram-Schmidt pass that keeps less than 1/sqrt(2) of the vector's norm
# has cancelled enough digits to need a second pass; one that keeps more is orthogonal to working precision.
_KEEP_FRACTION = 1 / math.sqrt(2)


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """T_m = tridiag(betas, alphas, betas) from m Lanczos steps on a unit seed vector v (float64, CPU).

    Its eigenvalues are the Gauss quadrature nodes of v's spectral measure and the squared first components of
    its eigenvectors the weights (Golub and Meurant 1994): sum_j w_j t_j^k = v^T H^k v for k < 2m.
    """

    alphas: torch.Tensor
    betas: torch.Tensor

    @property
    def steps_taken(self) -> int:
        return len(self.alphas)

    @property
    def ritz_values(self) -> torch.Tensor:
        return self._quadrature[0]

    @property
    def weights(self) -> torch.Tensor:
        return self._quadrature[1]

    @cached_property
    def _quadrature(self) -> tuple[torch.Tensor, torch.Tensor]:
        tridiagonal = torch.diag(self.alphas) + torch.diag(self.betas, 1) + torch.diag(self.betas, -1)
        nodes, vectors = torch.linalg.eigh(tridiagonal)
        return nodes, vectors[0] ** 2


def lanczos(
    op: CurvatureOperator,
    steps: int,
    v0: torch.Tensor,
    *,
    basis_device: torch.device | str | None = None,
) -> LanczosResult:
    """Run min(steps, op.size) Lanczos steps from v0, re-orthogonalising against the whole basis every step.

    Stops early when the Krylov space becomes invariant (beta at rounding level), returning the smaller exact
    tridiagonal. The basis (steps x size, op.dtype) lives on `basis_device` (default: the operator's device);
    "cpu" keeps it out of accelerator memory at the price of moving one vector each way per step.
    """
    require_int("steps", steps, 1)
    if v0.shape != (op.size,):
        raise ValueError(f"v0 has shape {tuple(v0.shape)}; the operator takes vectors of shape ({op.size},)")
    device = op.device if basis_device is None else torch.device(basis_device)
    start = v0.to(device, op.dtype)
    start_norm = start.norm().item()
    if not math.isfinite(start_norm) or start_norm == 0.0:
        raise ValueError(f"v0 has norm {start_norm}; Lanczos needs a finite nonzero seed vector")
    basis = torch.empty((min(steps, op.size), op.size), dtype=op.dtype, device=device)
    basis[0] = start / start_norm
    # Below this residual norm (relative to the largest |A q| seen) the Krylov space is invariant: the
    # remainder is the rounding of P-term dot products, not a direction of the operator.
    breakdown = torch.finfo(op.dtype).eps * math.sqrt(op.size)
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    for j in range(len(basis)):
        w = op.matvec(basis[j].to(op.device)).to(device)
        scale = max(scale, w.norm().item())
        alphas.append(torch.dot(basis[j], w).item())
        if j + 1 == len(basis):
            break
        # Out of place: an operator may hand back its input or a buffer it keeps (the identity does).
        w = w.sub(basis[j], alpha=alphas[-1])
        if j > 0:
            w.sub_(basis[j - 1], alpha=betas[-1])
        w = _orthogonalise(w, basis[: j + 1])
        beta = w.norm().item()
        if beta <= breakdown * scale:
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return LanczosResult(
        alphas=torch.tensor(alphas, dtype=torch.float64), betas=torch.tensor(betas, dtype=torch.float64)
    )


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w minus its projection on the rows of `basis`: classical Gram-Schmidt as two matrix-vector products,
    repeated once when the first pass cancelled most of w."""
    for _ in range(2):
        norm_before = w.norm()
        w = w - basis.T @ (basis @ w)
        if w.norm() >= _KEEP_FRACTION * norm_before:
            break
    return w
