"""The paper's architectures: standard CIFAR-100 parameter counts, shapes, and CPU-sized variants."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from config_groups import group_options, resolves
from workers.training.models import build_model
from workers.trial_config import MLPConfig, PreResNetConfig, VGGConfig, WideResNetConfig

VGG16 = VGGConfig()
PRERESNET164 = PreResNetConfig()
WRN28X10 = WideResNetConfig()


def _count(cfg: dict, num_classes: int = 100) -> int:
    with torch.device("meta"):  # no memory for the weights
        model = build_model(cfg, (3, 32, 32), num_classes)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("cfg", "num_classes", "expected", "approx"),
    [
        # VGG16-BN of the SWA code base: 13 conv + BN, classifier 512-512-C.
        (VGG16, 100, 15_299_748, 15.3e6),
        (replace(VGG16, classifier_hidden=[]), 100, 14_774_436, 14.8e6),
        (PRERESNET164, 100, 1_726_388, 1.7e6),
        (PRERESNET164, 10, 1_703_258, 1.7e6),
        (WRN28X10, 100, 36_546_980, 36.5e6),
        (WRN28X10, 10, 36_489_290, 36.5e6),
    ],
)
def test_parameter_counts(cfg: dict, num_classes: int, expected: int, approx: float) -> None:
    count = _count(cfg, num_classes)
    assert count == expected
    assert abs(count - approx) / approx < 0.02


def _layers(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_layer_structure_of_the_full_size_models() -> None:
    with torch.device("meta"):
        vgg = build_model(VGG16, (3, 32, 32), 100)
        preresnet = build_model(PRERESNET164, (3, 32, 32), 100)
        wrn = build_model(WRN28X10, (3, 32, 32), 100)
    assert len(_layers(vgg, nn.Conv2d)) == 13 and len(_layers(vgg, nn.BatchNorm2d)) == 13
    assert len(_layers(vgg, nn.Linear)) == 3
    # 164 = 1 stem conv + 54 bottlenecks x 3 convs + 1 linear (projection shortcuts are not counted).
    assert len(_layers(preresnet, nn.Conv2d)) == 1 + 54 * 3 + 3
    # 28 = 1 stem conv + 12 blocks x 2 convs (3x3) + 3 projection shortcuts (1x1).
    convs = _layers(wrn, nn.Conv2d)
    assert sum(c.kernel_size == (3, 3) for c in convs) == 25 and sum(c.kernel_size == (1, 1) for c in convs) == 3
    assert max(c.out_channels for c in convs) == 640


@pytest.mark.parametrize(
    "cfg",
    [
        replace(VGG16, depth=11, width_factor=0.125, classifier_hidden=[32]),
        PreResNetConfig(depth=11),
        PreResNetConfig(depth=20),
        WideResNetConfig(depth=10, widen_factor=1, dropout=0.3),
    ],
)
def test_cpu_sized_variants_train(cfg: dict) -> None:
    torch.manual_seed(0)
    model = build_model(cfg, (3, 32, 32), 100)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 100, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model(x).shape == (4, 100)
    assert all(p.grad is not None for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 400_000


def test_width_factor_scales_the_channels() -> None:
    model = build_model(replace(VGG16, width_factor=0.25), (3, 32, 32), 10)
    assert [c.out_channels for c in _layers(model, nn.Conv2d)] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]


def test_mlp_flattens_any_input_shape() -> None:
    model = build_model(MLPConfig(hidden_sizes=[20, 10], activation="tanh"), (1, 28, 28), 10)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 784 * 20 + 20 + 20 * 10 + 10 + 10 * 10 + 10


@pytest.mark.parametrize(
    ("cfg", "shape", "message"),
    [
        (PRERESNET164, (64,), r"model=preresnet needs image inputs \(channels, height, width\); the dataset gives \(64,\)"),
        (PreResNetConfig(depth=21), (3, 32, 32), r"model.depth=21: must be 9n\+2"),
        (replace(WRN28X10, depth=27), (3, 32, 32), r"model.depth=27: must be 6n\+4"),
        (replace(VGG16, depth=15), (3, 32, 32), "model.depth=15: must be 11, 13, 16 or 19"),
        (VGG16, (1, 16, 16), "16x16 images are too small"),
        (MLPConfig(hidden_sizes=[10], activation="swish"), (4,), "model.activation=swish"),
    ],
)
def test_bad_model_settings_are_refused(cfg: dict, shape: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(cfg, shape, 10)


def test_every_model_option_has_one_registry_entry_and_its_builder_resolves() -> None:
    from workers.training.model_kinds import MODELS

    assert group_options("model") == set(MODELS)
    assert all(resolves(kind.builder) for kind in MODELS.values())


def test_a_config_recorded_with_a_former_model_name_still_builds() -> None:
    """Runs recorded before models were named by family keep `model.name: vgg16` in their stored config, which
    `sweep spectrum` rebuilds the model from."""
    former = build_model(replace(VGG16, name="vgg16", width_factor=0.125, classifier_hidden=[]), (3, 32, 32), 10)
    family = build_model(replace(VGG16, width_factor=0.125, classifier_hidden=[]), (3, 32, 32), 10)
    assert [p.shape for p in former.parameters()] == [p.shape for p in family.parameters()]
