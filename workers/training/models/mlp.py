"""The paper's MNIST multilayer perceptron: flattened input, fully connected hidden layers, class logits."""

from __future__ import annotations

import math
from typing import Mapping

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build_mlp(cfg: Mapping, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    activation = cfg["activation"]
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.activation={activation!r} is not known; allowed: {', '.join(sorted(ACTIVATIONS))}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for hidden in cfg["hidden_sizes"]:
        layers += [nn.Linear(width, int(hidden)), ACTIVATIONS[activation]()]
        width = int(hidden)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
