"""The checks of a whole trial's training groups: each group's own rules, and how the groups fit together.

Each group's own rules live with its registry entry (``model_kinds``, ``dataset_kinds``, ``optimizers``,
``schedules``); this module adds what spans groups (averaging within the epoch budget, an image model on image data,
the examples a trial sees). Pure Python, no torch: the builders call these inside a worker, and the control plane
calls :func:`check_training_config` on every grid point before anything is launched. Each check raises a one-line
``ValueError`` naming the key, its value and what is allowed.
"""

from __future__ import annotations

from typing import Optional

from workers.training.dataset_kinds import DATASETS, check_dataset
from workers.training.model_kinds import check_model, model_kind
from workers.training.optimizers import check_optimizer
from workers.training.schedules import SCHEDULES, check_schedule
from workers.trial_config import DatasetConfig, ModelConfig, OptimizerConfig, TrialConfig


def averaging_start_epoch(optimizer_cfg: OptimizerConfig, total_epochs: int) -> Optional[int]:
    """T_avg: the number of completed epochs after which iterates join the average; None without averaging."""
    averaging = optimizer_cfg.averaging
    if not averaging.enabled:
        return None
    return total_epochs // 2 if averaging.start_epoch is None else averaging.start_epoch


def check_recipe_config(cfg: TrialConfig) -> None:
    """The optimizer and schedule groups, and how they fit the epoch budget."""
    check_optimizer(cfg.optimizer)
    check_schedule(cfg.schedule)
    epochs = cfg.trainer.epochs
    start = averaging_start_epoch(cfg.optimizer, epochs)
    if start is not None and start >= epochs:
        raise ValueError(
            f"optimizer.averaging.start_epoch={start}: must be below trainer.epochs={epochs}, or averaging never starts"
        )
    if SCHEDULES[cfg.schedule.name].needs_averaging and start is None:
        raise ValueError(
            f"schedule=ia_linear needs iterate averaging, which optimizer={cfg.optimizer.name} has off; "
            "use optimizer=gadam, gadamx or swa, or schedule=swa_linear"
        )


def check_training_config(cfg: TrialConfig) -> None:
    """Every training group of a whole trial config (model, dataset, optimizer, schedule, trainer.epochs)."""
    check_model(cfg.model)
    check_dataset(cfg.dataset)
    check_recipe_config(cfg)


def check_model_fits_dataset(model_cfg: ModelConfig, dataset_cfg: DatasetConfig) -> None:
    """An image model needs a dataset of images."""
    model, dataset = model_cfg.name, dataset_cfg.name
    facts = DATASETS[dataset]
    if model_kind(model).needs_images and not facts.is_image:
        images = ", ".join(name for name, f in DATASETS.items() if f.is_image)
        raise ValueError(
            f"model={model}: needs image inputs (channels, height, width), but dataset={dataset} gives flat vectors "
            f"of {facts.input_shape[0]} values; allowed: an image dataset ({images}), or model=mlp"
        )


def training_examples(dataset_cfg: DatasetConfig) -> int:
    """How many training examples a trial of this dataset sees: after the test split and ``dataset.subsample``."""
    facts = DATASETS[dataset_cfg.name]
    examples = facts.examples
    if not facts.official_split:
        # As data.py splits: round(N * test_fraction) examples are held out.
        examples -= int(round(facts.examples * dataset_cfg.test_fraction))
    subsample = dataset_cfg.subsample
    return examples if subsample is None else min(examples, subsample)
