"""Pre-activation ResNet for CIFAR with bottleneck blocks (He et al., 2016), as in the SWA code base.

Depth 9n+2: a 3x3 stem convolution to 16 channels, three stages of n bottleneck blocks (16, 32, 64 inner
channels, 4x expansion; stages 2 and 3 halve the resolution), then BatchNorm-ReLU, global average pooling and
a linear layer. A projection shortcut (1x1 convolution of the block's input) appears wherever the shape
changes. PreResNet-164 (n = 18) has 1,726,388 parameters for CIFAR-100 (1,703,258 for CIFAR-10); depth 11 or 20
trains on a CPU.
"""

from __future__ import annotations

import math
from typing import Optional

from torch import nn

from workers.trial_config import PreResNetConfig

EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * EXPANSION
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: Optional[nn.Module] = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        stages, channels = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for index in range(blocks_per_stage):
                stages.append(Bottleneck(channels, planes, stride if index == 0 else 1))
                channels = planes * EXPANSION
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))

    def forward(self, x):
        out = self.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(self.pool(out).flatten(1))


def build_preresnet(cfg: PreResNetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return PreResNet(cfg.depth, input_shape[0], num_classes)
