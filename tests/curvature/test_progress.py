"""A killed spectrum continues where it was saved and ends with exactly the uninterrupted numbers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from workers.curvature import HessianOperator, LambdaOperator, SpectrumSettings, compute_spectrum, lanczos, slq
from workers.curvature.lanczos import LanczosState
from workers.curvature.slq import SLQState


class Killed(Exception):
    """Stands for the worker's death at a checkpoint."""


class MemoryProgress:
    """Keeps the last saved state, as the spectrum job's artifact does; dies after `kill_after` saves."""

    def __init__(self, every: int, kill_after: int | None = None, keep_partial: bool = True) -> None:
        self.every, self.kill_after, self.keep_partial = every, kill_after, keep_partial
        self.state: SLQState | None = None
        self.saves = 0

    def load(self) -> SLQState | None:
        return self.state

    def save(self, state: SLQState) -> None:
        # The basis is copied out, as serialising it does: a view would change under the running Lanczos.
        partial = state.partial
        if partial is not None:
            partial = LanczosState(partial.alphas, partial.betas, partial.basis.clone(), partial.scale)
        self.state = SLQState(state.completed, partial if self.keep_partial else None)
        self.saves += 1
        if self.kill_after is not None and self.saves >= self.kill_after:
            self.kill_after = None
            raise Killed


def _same(a, b) -> None:
    assert len(a.runs) == len(b.runs)
    for x, y in zip(a.runs, b.runs, strict=True):
        assert torch.equal(x.alphas, y.alphas) and torch.equal(x.betas, y.betas)


def test_lanczos_resumed_from_a_checkpoint_equals_an_uninterrupted_run():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(60, 60, generator=generator, dtype=torch.float64)
    op = LambdaOperator.from_matrix(matrix + matrix.T)
    v0 = torch.randn(60, generator=generator, dtype=torch.float64)
    straight = lanczos(op, 30, v0)
    saved: list[LanczosState] = []
    lanczos(op, 30, v0, checkpoint=lambda s: saved.append(copy.deepcopy(s)), checkpoint_every=7)
    assert [s.steps_taken for s in saved] == [7, 14, 21, 28]
    resumed = lanczos(op, 30, v0, resume=saved[1])
    assert torch.equal(resumed.alphas, straight.alphas) and torch.equal(resumed.betas, straight.betas)
    with pytest.raises(ValueError, match="started from another vector"):
        lanczos(op, 30, v0 + 1, resume=saved[1])


@pytest.mark.parametrize("keep_partial", [True, False])
@pytest.mark.parametrize("kill_after", [1, 3, 4, 6])
def test_slq_killed_mid_vector_continues_from_its_progress(ref, kill_after, keep_partial):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    op = HessianOperator(model, F.cross_entropy, batches, dtype=torch.float64)
    straight = slq(op, steps=12, num_vectors=3, seed=2)
    # Saves at steps 5 and 10 of each vector and at its end: kills land mid-vector and between vectors.
    progress = MemoryProgress(every=5, kill_after=kill_after, keep_partial=keep_partial)
    with pytest.raises(Killed):
        slq(op, steps=12, num_vectors=3, seed=2, progress=progress)
    _same(slq(op, steps=12, num_vectors=3, seed=2, progress=progress), straight)


def test_compute_spectrum_sharded_continues_at_the_first_unfinished_vector(ray_session, ref):
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(41,))
    settings = SpectrumSettings(steps=8, num_vectors=3, dtype="float64", batch_size=10, num_workers=2)
    straight = compute_spectrum(model, F.cross_entropy, inputs, targets, settings)
    progress = MemoryProgress(every=5, kill_after=2)
    with pytest.raises(Killed):
        compute_spectrum(model, F.cross_entropy, inputs, targets, settings, progress=progress)
    assert len(progress.state.completed) == 2
    resumed = compute_spectrum(model, F.cross_entropy, inputs, targets, settings, progress=progress)
    for a, b in zip(resumed.alphas + resumed.betas, straight.alphas + straight.betas, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
