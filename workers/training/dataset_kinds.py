"""Every ``dataset=`` option in one registry: where its loader is, what it gives, and what it needs on disk.

Adding a dataset is its loader in ``workers/training/data.py``, one :class:`DatasetKind` entry here and its YAML in
``orchestrator/conf/dataset/``. The control plane reads the entries to check every grid point before launch (a file
dataset without ``dataset.root``, an image model on flat vectors, a batch larger than the data) without importing
torch; the loaders are tested to give what their entries say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from workers.trial_config import DatasetConfig
from workers.training.rules import require_known


@dataclass(frozen=True)
class DatasetKind:
    # "module:function" of its loader, called as loader(cfg) in the worker.
    loader: str
    # One example's shape: (features,) for flat vectors, (channels, height, width) for images.
    input_shape: tuple[int, ...]
    # Training examples of the official split; for the packaged datasets, all examples before the test split.
    examples: int
    # True when the dataset has its own test split; otherwise ``dataset.test_fraction`` is held out.
    official_split: bool
    # For a dataset read from ``dataset.root``: what the directory must hold, and where to get it. None: packaged.
    files: Optional[str] = None
    source: Optional[str] = None
    # Random crops and flips (``dataset.augment=true``) apply.
    augmentable: bool = False

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


_DATA = "workers.training.data"
DATASETS: dict[str, DatasetKind] = {
    "mnist5k": DatasetKind(f"{_DATA}:load_mnist5k", (784,), 5000, official_split=False),
    "digits": DatasetKind(f"{_DATA}:load_digits", (64,), 1797, official_split=False),
    "mnist": DatasetKind(
        f"{_DATA}:load_mnist", (1, 28, 28), 60000, official_split=True,
        files="train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
              "(each optionally .gz)",
        source="http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"),
    "cifar10": DatasetKind(
        f"{_DATA}:load_cifar10", (3, 32, 32), 50000, official_split=True,
        files="cifar-10-batches-py/ (data_batch_1 ... data_batch_5, test_batch)",
        source="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it)", augmentable=True),
    "cifar100": DatasetKind(
        f"{_DATA}:load_cifar100", (3, 32, 32), 50000, official_split=True,
        files="cifar-100-python/ (train, test)",
        source="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract it)", augmentable=True),
}


def check_dataset(cfg: DatasetConfig) -> None:
    name = cfg.name
    require_known("dataset", name, DATASETS)
    kind = DATASETS[name]
    if kind.files is not None and not cfg.root:
        raise ValueError(
            f"dataset.root=null: dataset={name} needs dataset.root=DIR, a directory holding {kind.files}; "
            f"get them from {kind.source}"
        )
    if cfg.augment and not kind.augmentable:
        allowed = " and ".join(n for n, k in DATASETS.items() if k.augmentable)
        raise ValueError(f"dataset.augment=true: crops and flips are for {allowed} only, not {name}")
    subsample = cfg.subsample
    if subsample is not None and subsample < 1:
        raise ValueError(f"dataset.subsample={subsample}: must be null or an integer >= 1")
