"""Small dataset files in the real formats, written by tests (nothing is downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def legacy_pickle(batch: dict) -> bytes:
    """Pickle protocol 2 naming numpy.core.multiarray, as the files on the CIFAR site (numpy 1.x) do."""
    return pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar(root: Path, name: str, per_file: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(1)
    folder, files, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10),
        "cifar100": ("cifar-100-python", ["train", "test"], b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True, exist_ok=True)
    written = {}
    for index, file in enumerate(files):
        data = rng.integers(0, 256, (per_file, 3072)).astype(np.uint8)
        labels = [int(v) for v in (np.arange(per_file) * 7 + index) % classes]
        batch = {b"batch_label": b"batch", b"data": data, key: labels, b"filenames": [b"x.png"] * per_file}
        if name == "cifar100":
            batch[b"coarse_labels"] = [v // 5 for v in labels]
        (root / folder / file).write_bytes(legacy_pickle(batch))
        written[file] = (data, labels)
    return written
