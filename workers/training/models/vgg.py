"""VGG with BatchNorm for 32x32 images, as in the SWA code base (Izmailov et al., 2018) the paper builds on.

Convolutional stacks are the standard configurations A/B/D/E (VGG-11/13/16/19), every 3x3 convolution followed by
BatchNorm and ReLU. The classifier is Dropout-Linear(512, 512)-ReLU-Dropout-Linear(512, 512)-ReLU-Linear(512, C)
(``classifier_hidden: [512, 512]``); with ``classifier_hidden: []`` it is the single linear layer of other CIFAR
ports. For CIFAR-100, VGG-16 has 15,299,748 parameters with the default classifier and 14,774,436 with a
single linear layer.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

from torch import nn

from workers.trial_config import VGGConfig

POOL = "M"
STACKS: dict[int, list[Union[int, str]]] = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}


def scaled(channels: int, width_factor: float) -> int:
    return max(1, int(round(channels * width_factor)))


def _features(stack: Sequence[Union[int, str]], in_channels: int, width_factor: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for item in stack:
        if item == POOL:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_channels = scaled(int(item), width_factor)
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            in_channels = out_channels
    return nn.Sequential(*layers), in_channels


def _classifier(in_features: int, hidden: Sequence[int], dropout: float, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(in_features, int(width)), nn.ReLU(inplace=True)]
        in_features = int(width)
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                # He initialisation over fan-out, biases zero, as in the reference implementation.
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def build_vgg(cfg: VGGConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    depth = cfg.depth
    stack = STACKS[depth]
    pools = stack.count(POOL)
    if height >> pools == 0 or width >> pools == 0:
        raise ValueError(
            f"model=vgg halves the input {pools} times: {height}x{width} images are too small (need >= {1 << pools})"
        )
    features, out_channels = _features(stack, channels, cfg.width_factor)
    flat = out_channels * (height >> pools) * (width >> pools)
    return VGG(features, _classifier(flat, cfg.classifier_hidden, cfg.dropout, num_classes))
