"""Every ``model=`` option in one registry: where its builder is, its checks, and the inputs it needs.

Adding a model is its builder module under ``workers/training/models/``, one :class:`ModelKind` entry here and its
YAML in ``orchestrator/conf/model/``. The control plane reads the entries to validate every grid point before
launch (without importing torch: builders are named, and imported in the worker by
:func:`workers.training.models.build_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from workers.trial_config import MLPConfig, ModelConfig, PreResNetConfig, VGGConfig, WideResNetConfig
from workers.training.rules import Rule, apply_rules, require_known


@dataclass(frozen=True)
class ModelKind:
    # Its keys and their types: the schema its YAML option extends (``_<name>_schema``).
    config: type[ModelConfig]
    # "module:function" of its builder, called as builder(cfg, input_shape, num_classes).
    builder: str
    rules: tuple[Rule, ...]
    # Built of convolutions over (channels, height, width); otherwise it flattens whatever it is given.
    needs_images: bool


VGG_DEPTHS = (11, 13, 16, 19)
_POSITIVE_INTS = (lambda v: all(w >= 1 for w in v), "a list of integers >= 1")
_DROPOUT: Rule = ("dropout", lambda v: 0 <= v < 1, "a number in [0, 1)")

MODELS: dict[str, ModelKind] = {
    "mlp": ModelKind(MLPConfig, "workers.training.models.mlp:build_mlp", (
        ("hidden_sizes", *_POSITIVE_INTS),
        ("activation", lambda v: v in ("relu", "tanh", "gelu"), "relu, tanh or gelu"),
    ), needs_images=False),
    "vgg": ModelKind(VGGConfig, "workers.training.models.vgg:build_vgg", (
        ("depth", lambda v: v in VGG_DEPTHS, "11, 13, 16 or 19"),
        ("width_factor", lambda v: v > 0, "a number > 0"),
        ("classifier_hidden", *_POSITIVE_INTS),
        _DROPOUT,
    ), needs_images=True),
    "preresnet": ModelKind(PreResNetConfig, "workers.training.models.preresnet:build_preresnet", (
        ("depth", lambda v: v >= 11 and (v - 2) % 9 == 0, "9n+2 with n >= 1 (11, 20, ..., 164)"),
    ), needs_images=True),
    "wideresnet": ModelKind(WideResNetConfig, "workers.training.models.wide_resnet:build_wide_resnet", (
        ("depth", lambda v: v >= 10 and (v - 4) % 6 == 0, "6n+4 with n >= 1 (10, 16, 22, 28, ...)"),
        ("widen_factor", lambda v: v >= 1, "an integer >= 1"),
        _DROPOUT,
    ), needs_images=True),
}
# Each family's former name: `model=` named what it built by default (`model=vgg16 model.depth=11` built a VGG-11)
# until models were named by family. Configs and sweeps recorded then carry the former name: they still compose (an
# alias YAML each), still build, and trial ids keep hashing the former name (orchestrator/identity.py).
FORMER_NAMES = {"vgg": "vgg16", "preresnet": "preresnet164", "wideresnet": "wideresnet28x10"}
_BY_FORMER_NAME = {former: name for name, former in FORMER_NAMES.items()}


def model_kind(name: str) -> ModelKind:
    """A model's registry entry, for a name recorded before models were named by family too."""
    name = _BY_FORMER_NAME.get(name, name)
    require_known("model", name, MODELS)
    return MODELS[name]


def check_model(cfg: ModelConfig) -> None:
    apply_rules("model", cfg, model_kind(cfg.name).rules)
