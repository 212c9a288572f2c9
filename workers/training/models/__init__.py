"""Models by name, built from a ``model`` config group option.

Image models take ``input_shape`` (C, H, W); the MLP flattens whatever shape it is given.
"""

from __future__ import annotations

from typing import Callable, Mapping

from torch import nn

from workers.training.config_checks import IMAGE_MODELS, check_model
from workers.training.models.mlp import build_mlp
from workers.training.models.preresnet import build_preresnet
from workers.training.models.vgg import build_vgg
from workers.training.models.wide_resnet import build_wide_resnet

Builder = Callable[[Mapping, tuple[int, ...], int], nn.Module]

BUILDERS: dict[str, Builder] = {
    "mlp": build_mlp,
    "vgg16": build_vgg,
    "preresnet164": build_preresnet,
    "wideresnet28x10": build_wide_resnet,
}


def build_model(cfg: Mapping, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    check_model(cfg)
    name = cfg["name"]
    if name in IMAGE_MODELS and len(input_shape) != 3:
        raise ValueError(
            f"model={name} needs image inputs (channels, height, width); the dataset gives {tuple(input_shape)}"
        )
    return BUILDERS[name](cfg, tuple(input_shape), num_classes)
