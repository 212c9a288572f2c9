"""SLQ estimates, density and serialisation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from workers.curvature import HessianOperator, LambdaOperator, SpectrumResult, slq
from workers.curvature.plots import plot_density


@pytest.fixture(scope="module")
def hessian_case(ref):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    operator = HessianOperator(model, F.cross_entropy, batches, dtype=torch.float64)
    return operator, ref.exact_hessian(model, batches, "eval")


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_trace_estimate_is_within_three_standard_errors(hessian_case, distribution):
    operator, hessian = hessian_case
    result = slq(operator, steps=10, num_vectors=30, seed=0, distribution=distribution)
    assert result.trace_stderr > 0
    assert abs(result.trace_estimate - torch.trace(hessian).item()) <= 3 * result.trace_stderr
    assert result.lambda_max <= torch.linalg.eigvalsh(hessian).max().item() + 1e-12


def test_diagonal_operator_with_rademacher_vectors_is_estimated_exactly():
    # z^T D^k z = Tr(D^k) for z in {-1, 1}^P, and with steps = P the quadrature is exact.
    diagonal = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    result = slq(LambdaOperator.from_matrix(torch.diag(diagonal)), steps=6, num_vectors=3, seed=5)
    assert result.trace_estimate == pytest.approx(diagonal.sum().item(), abs=1e-12)
    assert result.trace_stderr == pytest.approx(0.0, abs=1e-12)
    assert result.trace_sq_estimate == pytest.approx((diagonal**2).sum().item(), abs=1e-12)
    assert result.negative_mass == pytest.approx(2 / 6, abs=1e-12)
    assert (result.lambda_min, result.lambda_max) == (pytest.approx(-2.0), pytest.approx(4.0))


def test_density_integrates_to_one_over_the_grid(hessian_case):
    operator, _ = hessian_case
    result = slq(operator, steps=20, num_vectors=3, seed=0)
    for grid in (torch.linspace(result.lambda_min - 1, result.lambda_max + 1, 2001), torch.linspace(-0.2, 0.3, 301)):
        density = result.density(grid, sigma=0.02)
        assert (density >= 0).all()
        assert torch.trapezoid(density, grid.double()).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="sigma=0 is invalid"):
        result.density(torch.linspace(-1, 1, 11), sigma=0)


def test_seeds_are_reproducible_and_distributions_differ(hessian_case):
    operator, _ = hessian_case

    def run(seed: int, distribution: str = "rademacher") -> SpectrumResult:
        return slq(operator, steps=8, num_vectors=2, seed=seed, distribution=distribution)

    first, again = run(7), run(7)
    assert all(torch.equal(a, b) for a, b in zip(first.alphas + first.betas, again.alphas + again.betas, strict=True))
    assert not torch.equal(first.alphas[0], run(8).alphas[0])
    assert not torch.equal(first.alphas[0], run(7, "gaussian").alphas[0])
    assert first.alphas[0].numel() == 8 and len(first.ritz_values) == len(first.weights) == 2


def test_to_dict_is_json_serialisable(hessian_case):
    operator, _ = hessian_case
    result = slq(operator, steps=5, num_vectors=1, seed=0, distribution="gaussian")
    record = json.loads(json.dumps(result.to_dict()))
    assert record["trace_stderr"] is None and record["distribution"] == "gaussian" and record["size"] == operator.size
    assert record["runs"][0]["ritz_values"] == result.ritz_values[0].tolist()
    assert len(record["runs"][0]["betas"]) == 4 and record["lambda_max"] == result.lambda_max
    assert record["steps_taken"] == [5] == list(result.steps_taken)


def test_steps_taken_reports_each_runs_early_stop():
    # Rank 2 plus the seed's null-space part: every Krylov space is invariant after 3 steps.
    operator = LambdaOperator.from_matrix(torch.diag(torch.tensor([2.0, -1.0, 0.0, 0.0, 0.0], dtype=torch.float64)))
    result = slq(operator, steps=5, num_vectors=2, seed=0)
    assert result.steps_taken == (3, 3) and result.to_dict()["steps_taken"] == [3, 3]


def test_bad_settings_are_refused(hessian_case):
    operator, _ = hessian_case
    with pytest.raises(ValueError, match="distribution='normal' is not supported; choose one of 'rademacher', 'gau"):
        slq(operator, steps=5, num_vectors=1, distribution="normal")
    with pytest.raises(ValueError, match="num_vectors=0 is invalid"):
        slq(operator, steps=5, num_vectors=0)


def test_plot_density_writes_a_png(hessian_case, tmp_path):
    operator, _ = hessian_case
    result = slq(operator, steps=10, num_vectors=2, seed=0)
    path = plot_density(result, tmp_path / "density.png", title="tanh MLP")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
