"""The sharded operator over 2 real Ray workers (Gloo on CPU) equals the single-process operator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ray.util import placement_group_table

from workers.curvature import ShardedCurvatureOperator, slq
from workers.curvature.kinds import OPERATOR_KINDS
from workers.curvature.sharded import shard_bounds


def test_shards_are_whole_batches_balanced_by_count():
    assert shard_bounds(45, 8, 2) == [(0, 24), (24, 45)]
    assert shard_bounds(10, 3, 3) == [(0, 6), (6, 9), (9, 10)]
    assert shard_bounds(7, None, 1) == [(0, 7)]
    with pytest.raises(ValueError, match="num_workers=3 exceeds the 2 batch"):
        shard_bounds(10, 5, 3)


# 45 samples in batches of 8: shards of 24 and 21 samples, the last batch short. BatchNorm in train mode
# checks that shards keep the single-process batches.
@pytest.mark.parametrize(
    ("name", "kind", "bn_mode"),
    [("tanh_mlp", "hessian", "eval"), ("bn_cnn", "hessian", "train"), ("bn_cnn", "ggn", "eval")],
)
def test_two_workers_equal_one_process(ray_session, ref, name, kind, bn_mode):
    model = ref.make_model(name)
    [(inputs, targets)] = ref.make_data(name, sizes=(45,))
    options = {"bn_mode": bn_mode, "dtype": torch.float64, "batch_size": 8}
    single = OPERATOR_KINDS[kind](model, F.cross_entropy, (inputs, targets), **options)
    vectors = torch.randn(3, single.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sharded = ShardedCurvatureOperator(model, F.cross_entropy, inputs, targets, kind=kind, num_workers=2, **options)
    with sharded:
        assert (sharded.size, sharded.dtype) == (single.size, torch.float64)
        for v in vectors:
            assert ref.relative_error(sharded.matvec(v), single.matvec(v)) < 1e-10


@pytest.mark.parametrize("basis_device", [None, "cpu"])
def test_spectrum_with_the_basis_sliced_over_two_workers_equals_one_process(ray_session, ref, basis_device):
    """tanh_mlp has 51 parameters: odd, so the second slice carries a padding entry that must stay zero."""
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(45,))
    options = {"dtype": torch.float64, "batch_size": 8}
    single = OPERATOR_KINDS["hessian"](model, F.cross_entropy, (inputs, targets), **options)
    expected = slq(single, steps=12, num_vectors=2, seed=3)
    with ShardedCurvatureOperator(model, F.cross_entropy, inputs, targets, num_workers=2, **options) as sharded:
        result = sharded.spectrum(12, 2, seed=3, basis_device=basis_device)
        assert len(set(sharded.worker_pids())) == 2
    assert single.size % 2 == 1 and result.size == single.size and result.steps_taken == (12, 12)
    for ours, theirs in zip(result.alphas + result.betas, expected.alphas + expected.betas, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_sliced_spectrum_stops_at_invariance_on_every_rank_together(ray_session, ref):
    """A run shorter than asked: every rank must leave Lanczos at the same step, or the gang would hang in a
    collective. The GGN of 2 samples with 3 classes has rank 4: the seed's Krylov space is invariant at 5."""
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(2,))
    options = {"kind": "ggn", "dtype": torch.float64, "batch_size": 1}
    single = OPERATOR_KINDS["ggn"](model, F.cross_entropy, (inputs, targets), dtype=torch.float64, batch_size=1)
    expected = slq(single, 40, 1)
    with ShardedCurvatureOperator(model, F.cross_entropy, inputs, targets, num_workers=2, **options) as sharded:
        result = sharded.spectrum(40, 1)
    assert result.steps_taken == expected.steps_taken == (5,)
    assert torch.allclose(result.ritz_values[0], expected.ritz_values[0], rtol=1e-8, atol=1e-10)


def test_shutdown_frees_the_gang(ray_session, ref):
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(8,))
    operator = ShardedCurvatureOperator(model, F.cross_entropy, inputs, targets, num_workers=1)
    assert _live_groups() == 1
    operator.shutdown()
    operator.shutdown()
    assert _live_groups() == 0
    with pytest.raises(RuntimeError, match="has been shut down"):
        operator.matvec(torch.zeros(operator.size))


def test_an_impossible_gang_fails_clearly(ray_session, ref):
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(8,))
    with pytest.raises(RuntimeError, match="could not reserve 3 workers"):
        ShardedCurvatureOperator(
            model, F.cross_entropy, inputs, targets, num_workers=3, batch_size=2, ready_timeout_s=1
        )
    assert _live_groups() == 0


def _live_groups() -> int:
    return sum(group["state"] != "REMOVED" for group in placement_group_table().values())
