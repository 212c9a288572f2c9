"""Lanczos against eigvalsh of exact Hessians and exact spectral moments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workers.curvature import HessianOperator, LambdaOperator, lanczos


@pytest.fixture(scope="module")
def hessian_case(ref):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    operator = HessianOperator(model, F.cross_entropy, batches, dtype=torch.float64)
    return operator, ref.exact_hessian(model, batches, "eval")


def test_extremal_ritz_values_equal_exact_eigenvalues(hessian_case):
    operator, hessian = hessian_case
    eigenvalues = torch.linalg.eigvalsh(hessian)
    v = torch.randn(operator.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = lanczos(operator, 30, v)
    assert result.steps_taken == 30 < operator.size
    for ritz, exact in ((result.ritz_values.max(), eigenvalues.max()), (result.ritz_values.min(), eigenvalues.min())):
        assert abs(ritz - exact) <= 1e-6 * abs(exact)


def test_full_run_reproduces_the_spectral_moments(hessian_case):
    operator, hessian = hessian_case
    v = torch.randn(operator.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = lanczos(operator, operator.size, v)
    v = v / v.norm()
    for k in range(4):
        exact = v @ torch.linalg.matrix_power(hessian, k) @ v
        assert torch.isclose((result.weights * result.ritz_values**k).sum(), exact, rtol=1e-10, atol=1e-14)
    assert result.alphas.dtype == result.betas.dtype == torch.float64
    assert len(result.betas) == result.steps_taken - 1


def test_invariant_subspace_stops_with_the_exact_smaller_tridiagonal():
    generator = torch.Generator().manual_seed(2)
    basis, _ = torch.linalg.qr(torch.randn(40, 3, dtype=torch.float64, generator=generator))
    eigenvalues = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    operator = LambdaOperator.from_matrix(basis @ torch.diag(eigenvalues) @ basis.T)
    v = torch.randn(40, dtype=torch.float64, generator=generator)
    result = lanczos(operator, 20, v)
    # span{v, Av, A^2 v, ...} is the 3-D range plus v's null-space component: 4 dimensions.
    assert result.steps_taken == 4
    assert torch.allclose(result.ritz_values, torch.tensor([-1.0, 0.0, 2.0, 3.0], dtype=torch.float64), atol=1e-12)
    v = v / v.norm()
    in_range = (basis.T @ v) ** 2
    expected_weights = torch.stack([in_range[1], 1 - in_range.sum(), in_range[2], in_range[0]])
    assert torch.allclose(result.weights, expected_weights, atol=1e-12)


def _diagonal(values: torch.Tensor, dtype: torch.dtype) -> LambdaOperator:
    diagonal = values.to(dtype)
    return LambdaOperator(lambda v: diagonal * v, len(diagonal), dtype=dtype)


def test_float32_narrow_bulk_under_large_outliers_runs_every_step():
    """Issue 10's case: the end-of-training shape (a few converged outliers over a narrow bulk) at P = 1e5.
    A stopping rule scaled by sqrt(P) stopped after 7-8 of 40 steps with lambda_min near -0.03."""
    generator = torch.Generator().manual_seed(0)
    values = torch.empty(100_000, dtype=torch.float64).uniform_(-0.05, 0.05, generator=generator)
    values[:5] = torch.tensor([1000.0, 500.0, 200.0, 100.0, 50.0], dtype=torch.float64)
    v = torch.randn(len(values), dtype=torch.float64, generator=generator)
    result = lanczos(_diagonal(values, torch.float32), 40, v)
    assert result.steps_taken == 40
    assert abs(result.ritz_values.min() - values.min()) <= 0.02 * abs(values.min())
    assert abs(result.ritz_values.max() - 1000.0) <= 1e-5 * 1000.0


def _levels_case(levels: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A P = 1e5 diagonal with only len(levels) distinct values, a seed vector, and the seed's exact spectral
    measure: the weight of each level."""
    generator = torch.Generator().manual_seed(seed)
    levels = torch.tensor(levels, dtype=torch.float64)
    which = torch.randint(0, len(levels), (100_000,), generator=generator)
    v = torch.randn(len(which), dtype=torch.float64, generator=generator)
    mass = torch.zeros(len(levels), dtype=torch.float64).index_add_(0, which, v**2) / (v**2).sum()
    return levels[which], v, mass


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_three_distinct_eigenvalues_stop_after_three_steps(dtype):
    values, v, mass = _levels_case([3.0, -1.0, 2.0], seed=4)
    result = lanczos(_diagonal(values, dtype), 40, v)
    assert result.steps_taken == 3
    assert torch.allclose(result.ritz_values, torch.tensor([-1.0, 2.0, 3.0], dtype=torch.float64), rtol=1e-5)
    assert torch.allclose(result.weights, mass[[1, 2, 0]], atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_invariance_blurred_by_rounding_still_stops_and_keeps_the_measure(dtype):
    """Levels 1000, -3, 0.05: the third basis vector is built from a residual ~400x smaller than ||A||, so it
    carries rounding amplified that much and the residual at invariance is ~85 eps ||A||, above the threshold.
    Lanczos then goes on in the orthogonal complement: extra Ritz values that are Rayleigh quotients of A and
    weigh nothing, so the quadrature is still the seed's exact measure, and it stops well before 40 steps."""
    levels = [1000.0, -3.0, 0.05]
    values, v, mass = _levels_case(levels, seed=4)
    result = lanczos(_diagonal(values, dtype), 40, v)
    assert result.steps_taken < 20
    assert values.min() - 1e-3 <= result.ritz_values.min() and result.ritz_values.max() <= values.max() + 1e-2
    nearest = (result.ritz_values[:, None] - torch.tensor(levels, dtype=torch.float64)).abs().argmin(dim=1)
    found = torch.zeros(3, dtype=torch.float64).index_add_(0, nearest, result.weights)
    assert torch.allclose(found, mass, atol=1e-5)


def test_float32_operator_keeps_float64_coefficients(hessian_case, ref):
    operator64, hessian = hessian_case
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    operator = HessianOperator(model, F.cross_entropy, batches)
    result = lanczos(operator, 20, torch.ones(operator.size))
    assert result.alphas.dtype == torch.float64
    assert abs(result.ritz_values.max() - torch.linalg.eigvalsh(hessian).max()) < 1e-5 * hessian.norm()


def test_basis_on_cpu_gives_the_same_result(hessian_case):
    operator, _ = hessian_case
    v = torch.randn(operator.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    on_device, on_cpu = lanczos(operator, 15, v), lanczos(operator, 15, v, basis_device="cpu")
    assert torch.equal(on_device.alphas, on_cpu.alphas) and torch.equal(on_device.betas, on_cpu.betas)


def test_steps_beyond_the_dimension_are_capped():
    operator = LambdaOperator.from_matrix(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    result = lanczos(operator, 50, torch.ones(5, dtype=torch.float64))
    assert result.steps_taken == 5
    assert torch.allclose(result.ritz_values, torch.arange(1.0, 6.0, dtype=torch.float64))


def test_bad_seed_vectors_and_steps_are_refused():
    operator = LambdaOperator.from_matrix(torch.eye(4))
    with pytest.raises(ValueError, match=r"v0 has shape \(3,\)"):
        lanczos(operator, 2, torch.ones(3))
    with pytest.raises(ValueError, match="v0 has norm 0.0"):
        lanczos(operator, 2, torch.zeros(4))
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        lanczos(operator, 0, torch.ones(4))
