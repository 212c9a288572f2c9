"""Lanczos with full re-orthogonalisation, and the Gauss quadrature its tridiagonal matrix defines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from workers.curvature.layout import Sliced, Whole
from workers.curvature.operators import CurvatureOperator
from workers.curvature.validation import require_int

# Kahan-Parlett "twice is enough": a Gram-Schmidt pass that keeps less than 1/sqrt(2) of the vector's norm
# has cancelled enough digits to need a second pass; one that keeps more is orthogonal to working precision.
_KEEP_FRACTION = 1 / math.sqrt(2)
# Invariance is declared when the new residual is below this many units of rounding of the operator's norm.
# A residual that is rounding and not a direction of the operator is a few eps * ||A||, or up to
# ||A|| / beta_min times that when an earlier small beta amplified the rounding in the basis (measured ~85 eps
# * ||A|| for levels 1000, -3, 0.05 in both float32 and float64). Erring low is harmless: continuing from a
# rounding residual restarts Lanczos in the orthogonal complement, whose Ritz values are still Rayleigh
# quotients of A and weigh ~(residual / gap)^2, and it stops again once that block is exhausted. Erring high
# is not: a bulk narrower than the threshold is cut off and lambda_min and the density come out wrong (issue
# 10: eps * sqrt(P) * ||A|| stopped a float32 run at P = 1e5 after 8 of 40 steps, a bulk of half-width
# 5e-5 * ||A|| unexplored). Ten units keep that bulk's betas (~2.5e-5 * ||A||) 20x above the threshold.
_INVARIANCE_ULPS = 10


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


@dataclass(frozen=True, eq=False)
class LanczosState:
    """Lanczos after len(alphas) steps, enough to continue it exactly: the coefficients so far, the basis vectors
    q_0 .. q_m (one more than the coefficients: the next product's input), and the largest |A q| seen."""

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    basis: torch.Tensor
    scale: float

    @property
    def steps_taken(self) -> int:
        return len(self.alphas)


def lanczos(
    op: CurvatureOperator,
    steps: int,
    v0: torch.Tensor,
    *,
    basis_device: torch.device | str | None = None,
    resume: LanczosState | None = None,
    checkpoint: Callable[[LanczosState], None] | None = None,
    checkpoint_every: int = 10,
) -> LanczosResult:
    """Run min(steps, op.size) Lanczos steps from v0, re-orthogonalising against the whole basis every step.

    Stops early only when the Krylov space becomes invariant (beta within a few units of rounding of the
    operator's norm), returning the smaller exact tridiagonal; `steps_taken` on the result says how many.
    The basis (steps x size, op.dtype) lives on `basis_device` (default: the operator's device); "cpu"
    keeps it out of accelerator memory at the price of moving one vector each way per step. Under a
    sliced layout (`op.layout`) every rank of the gang runs this same code on its slices of v0 and of the
    basis; dot products and norms are summed over the gang, so every rank takes the same branches.

    `checkpoint` is called with the state after every `checkpoint_every` steps; `resume` continues from such a
    state (of the same operator and v0) and ends with exactly the coefficients an uninterrupted run has.
    """
    require_int("steps", steps, 1)
    if v0.shape != (op.size,):
        raise ValueError(f"v0 has shape {tuple(v0.shape)}; the operator takes vectors of shape ({op.size},)")
    layout = op.layout
    device = op.device if basis_device is None else torch.device(basis_device)
    start = layout.local(v0).to(device, op.dtype)
    start_norm = math.sqrt(_dot(layout, start, start))
    if not math.isfinite(start_norm) or start_norm == 0.0:
        raise ValueError(f"v0 has norm {start_norm}; Lanczos needs a finite nonzero seed vector")
    basis = torch.empty((min(steps, op.size), layout.local_size(op.size)), dtype=op.dtype, device=device)
    basis[0] = start / start_norm
    # The largest |A q| seen is a lower bound on ||A|| that is within a small factor of it once the extremal
    # Ritz values have settled (it bounds |alpha| and beta from above); no sqrt(P): the rounding of a
    # re-orthogonalised residual does not grow with the dimension the way a worst-case dot-product bound does.
    breakdown = _INVARIANCE_ULPS * torch.finfo(op.dtype).eps
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    if resume is not None:
        alphas, betas, scale = list(resume.alphas), list(resume.betas), resume.scale
        _restore(basis, resume)
    for j in range(len(alphas), len(basis)):
        w = op.matvec(basis[j].to(op.device)).to(device)
        scale = max(scale, math.sqrt(_dot(layout, w, w)))
        alphas.append(_dot(layout, basis[j], w))
        if j + 1 == len(basis):
            break
        # Out of place: an operator may hand back its input or a buffer it keeps (the identity does).
        w = w.sub(basis[j], alpha=alphas[-1])
        if j > 0:
            w.sub_(basis[j - 1], alpha=betas[-1])
        w, norm_sq = _orthogonalise(w, basis[: j + 1], layout)
        beta = math.sqrt(norm_sq)
        if beta <= breakdown * scale:
            break
        betas.append(beta)
        basis[j + 1] = w / beta
        if checkpoint is not None and (j + 1) % checkpoint_every == 0:
            checkpoint(LanczosState(tuple(alphas), tuple(betas), basis[: j + 2], scale))
    return LanczosResult(
        alphas=torch.tensor(alphas, dtype=torch.float64), betas=torch.tensor(betas, dtype=torch.float64)
    )


def _restore(basis: torch.Tensor, state: LanczosState) -> None:
    """Put a saved state's basis in place, after checking that it continues this run (same v0, same layout)."""
    rows = state.basis.to(basis.device, basis.dtype)
    if len(state.betas) != len(state.alphas) or len(rows) != len(state.alphas) + 1 or rows.shape[1:] != basis.shape[1:]:
        raise ValueError(f"a saved Lanczos state of {len(state.alphas)} steps with {len(rows)} basis vectors of "
                         f"{tuple(rows.shape[1:])} entries cannot continue a run of vectors of {basis.shape[1]} entries")
    if len(rows) > len(basis):
        raise ValueError(f"a saved Lanczos state of {len(state.alphas)} steps exceeds this run's {len(basis)} steps")
    if not torch.equal(rows[0], basis[0]):
        raise ValueError("the saved Lanczos state started from another vector; it cannot continue this run")
    basis[: len(rows)] = rows


def _dot(layout: Whole | Sliced, a: torch.Tensor, b: torch.Tensor) -> float:
    """a . b accumulated in float64 (summed over the gang's slices under a sliced layout).

    The coefficients of T are where float32 rounding would enter the quadrature: on the CPU, float32 `norm`
    and `dot` accumulate with an error growing like eps * sqrt(P) (2.4e-5 relative at P = 1e5, which put the
    top Ritz value of a diagonal operator 3e-5 above its largest eigenvalue); the elementwise product rounds
    once per entry, and a float64 sum adds no error measurable at these sizes.
    """
    return layout.sum(torch.sum(a * b, dtype=torch.float64)).item()


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor, layout: Whole | Sliced) -> tuple[torch.Tensor, float]:
    """w minus its projection on the rows of `basis`, and that vector's squared norm: classical Gram-Schmidt as
    two matrix-vector products (the coefficients summed over the gang's slices), repeated once when the first
    pass cancelled most of w."""
    norm_sq = _dot(layout, w, w)
    for _ in range(2):
        norm_sq_before = norm_sq
        w = w - basis.T @ layout.sum(basis @ w)
        norm_sq = _dot(layout, w, w)
        if norm_sq >= _KEEP_FRACTION**2 * norm_sq_before:
            break
    return w, norm_sq
