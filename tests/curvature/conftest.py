"""Small float64 models, unequal batches, exact curvature matrices and a real Ray for the curvature tests."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Batches = list[tuple[torch.Tensor, torch.Tensor]]

for _key, _value in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_key, _value)

BATCH_SIZES = (7, 5, 4)
NUM_CLASSES = 3


def _mlp(activation: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), activation, nn.Linear(6, NUM_CLASSES))


def _with_nontrivial_statistics(model: nn.Module, layer: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine terms for a BatchNorm layer, so eval mode differs from train mode."""
    with torch.no_grad():
        layer.running_mean.uniform_(-0.5, 0.5)
        layer.running_var.uniform_(0.5, 2.0)
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    return model


def _bn_cnn() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(18, NUM_CLASSES)
    )
    return _with_nontrivial_statistics(model, model[1])


def _bn_mlp() -> nn.Module:
    """BatchNorm1d on (N, C) inputs: one affine layer with running statistics, one with neither (which
    normalises with batch statistics in both modes)."""
    model = nn.Sequential(
        nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(),
        nn.Linear(5, 5), nn.BatchNorm1d(5, affine=False, track_running_stats=False), nn.Linear(5, NUM_CLASSES),
    )
    return _with_nontrivial_statistics(model, model[1])


class _SkipCNN(nn.Module):
    """A convolution whose output both a BatchNorm layer and a skip connection read: the layer cannot be folded
    into it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.norm = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 5 * 5, NUM_CLASSES)
        _with_nontrivial_statistics(self, self.norm)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.conv(inputs)
        return self.head(torch.flatten(torch.tanh(self.norm(features)) + features, 1))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "tanh_mlp": (lambda: _mlp(nn.Tanh()), (4,)),
    "relu_mlp": (lambda: _mlp(nn.ReLU()), (4,)),
    "bn_cnn": (_bn_cnn, (1, 5, 5)),
    "bn_mlp": (_bn_mlp, (4,)),
    "skip_cnn": (_SkipCNN, (1, 5, 5)),
}


def make_model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name][0]().double()


def make_data(name: str, sizes: tuple[int, ...] = BATCH_SIZES, seed: int = 1) -> Batches:
    generator = torch.Generator().manual_seed(seed)
    shape = MODELS[name][1]
    return [
        (torch.randn(n, *shape, generator=generator, dtype=torch.float64),
         torch.randint(0, NUM_CLASSES, (n,), generator=generator))
        for n in sizes
    ]


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _functional(model: nn.Module, bn_mode: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """outputs(flat_params, inputs) of a copy of the model, BatchNorm in the given mode, buffers untouched."""
    reference = copy.deepcopy(model).train(bn_mode == "train")
    shapes = {name: p.shape for name, p in reference.named_parameters()}
    buffers = dict(reference.named_buffers())

    def outputs(flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([s.numel() for s in shapes.values()])
        params = {name: t.view(shape) for (name, shape), t in zip(shapes.items(), pieces, strict=True)}
        return functional_call(reference, {**params, **{k: b.clone() for k, b in buffers.items()}}, (inputs,))

    return outputs


def exact_hessian(model: nn.Module, batches: Batches, bn_mode: str) -> torch.Tensor:
    """Hessian of sum_b (n_b/N) CE_b by torch.autograd.functional.hessian (torch.func.hessian is wrong
    through BatchNorm in train mode)."""
    outputs = _functional(model, bn_mode)
    total = sum(len(x) for x, _ in batches)

    def mean_loss(flat: torch.Tensor) -> torch.Tensor:
        return sum(len(x) / total * F.cross_entropy(outputs(flat, x), y) for x, y in batches)

    return torch.autograd.functional.hessian(mean_loss, flat_params(model))


def exact_ggn(model: nn.Module, batches: Batches, bn_mode: str) -> torch.Tensor:
    """sum_b (n_b/N) J_b^T H_b J_b with explicit Jacobians and output Hessians."""
    outputs = _functional(model, bn_mode)
    flat = flat_params(model)
    total = sum(len(x) for x, _ in batches)
    ggn = torch.zeros(len(flat), len(flat), dtype=torch.float64)
    for x, y in batches:
        jacobian = torch.autograd.functional.jacobian(lambda w, x=x: outputs(w, x).reshape(-1), flat)
        out = outputs(flat, x).detach()
        h_out = torch.autograd.functional.hessian(
            lambda o, out=out, y=y: F.cross_entropy(o.view_as(out), y), out.reshape(-1)
        )
        ggn += len(x) / total * jacobian.T @ h_out @ jacobian
    return ggn


def dense(operator) -> torch.Tensor:
    """The operator's matrix, one matvec per column."""
    eye = torch.eye(operator.size, dtype=operator.dtype, device=operator.device)
    return torch.stack([operator.matvec(column) for column in eye], dim=1)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The helpers above, as a fixture: test modules cannot import a conftest reliably."""
    return SimpleNamespace(
        make_model=make_model, make_data=make_data, flat_params=flat_params, exact_hessian=exact_hessian,
        exact_ggn=exact_ggn, dense=dense, relative_error=relative_error,
    )


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real local Ray with 2 CPUs; reuses one a broader fixture already started."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started_here:
        ray.shutdown()
