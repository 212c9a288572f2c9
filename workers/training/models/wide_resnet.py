"""Wide residual network for CIFAR (Zagoruyko & Komodakis, 2016), as in the SWA code base.

Depth 6n+4 and widening factor k: a 3x3 stem convolution to 16 channels, three stages of n pre-activation basic
blocks with 16k, 32k, 64k channels (stages 2 and 3 halve the resolution), dropout between a block's two
convolutions, then BatchNorm-ReLU, global average pooling and a linear layer. Convolutions carry biases and
the shortcut is a 1x1 convolution of the block's input wherever the shape changes, as in that code base.
WRN-28-10 has 36,546,980 parameters for CIFAR-100.
"""

from __future__ import annotations

import math
from typing import Optional

from torch import nn

from workers.trial_config import WideResNetConfig


class WideBasic(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: Optional[nn.Module] = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x):
        out = self.dropout(self.conv1(self.relu(self.bn1(x))))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, dropout: float, in_channels: int, num_classes: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        stages, channels = [], 16
        for base, stride in ((16, 1), (32, 2), (64, 2)):
            for index in range(blocks_per_stage):
                stages.append(WideBasic(channels, base * widen_factor, stride if index == 0 else 1, dropout))
                channels = base * widen_factor
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2.0))
                nn.init.zeros_(module.bias)

    def forward(self, x):
        out = self.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(self.pool(out).flatten(1))


def build_wide_resnet(cfg: WideResNetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return WideResNet(cfg.depth, cfg.widen_factor, cfg.dropout, input_shape[0], num_classes)
