"""Models by name, built from a ``model`` config group option."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _build_mlp(cfg: Mapping, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    activation = ACTIVATIONS[cfg["activation"]]
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(torch.tensor(input_shape).prod())
    for hidden in cfg["hidden_sizes"]:
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


BUILDERS: dict[str, Callable[[Mapping, tuple[int, ...], int], nn.Module]] = {
    "mlp": _build_mlp,
}


def build_model(cfg: Mapping, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    name = cfg["name"]
    if name not in BUILDERS:
        raise ValueError(f"model.name={name!r} is not known; allowed: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](cfg, input_shape, num_classes)
