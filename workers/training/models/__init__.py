"""Models by name, built from a ``model`` config group option (the registry: ``workers.training.model_kinds``).

Image models take ``input_shape`` (C, H, W); the MLP flattens whatever shape it is given.
"""

from __future__ import annotations

from torch import nn

from workers.training.model_kinds import check_model, model_kind
from workers.training.references import resolve
from workers.trial_config import ModelConfig


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    check_model(cfg)
    kind = model_kind(cfg.name)
    if kind.needs_images and len(input_shape) != 3:
        raise ValueError(
            f"model={cfg.name} needs image inputs (channels, height, width); the dataset gives {tuple(input_shape)}"
        )
    return resolve(kind.builder)(cfg, tuple(input_shape), num_classes)
