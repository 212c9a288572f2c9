"""The data an operator averages over, as a re-iterable sequence of (inputs, targets) batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch

Batch = tuple[torch.Tensor, torch.Tensor]
Data = Batch | Iterable[Batch]


def is_tensor_pair(data: object) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    )


def chunk_pair(inputs: torch.Tensor, targets: torch.Tensor, batch_size: int | None) -> list[Batch]:
    """Consecutive slices of `batch_size` samples (one batch when None); views, no copies."""
    if len(inputs) != len(targets):
        raise ValueError(f"inputs hold {len(inputs)} samples but targets hold {len(targets)}")
    if len(inputs) == 0:
        raise ValueError("the data hold no samples")
    step = batch_size or len(inputs)
    return [(inputs[i : i + step], targets[i : i + step]) for i in range(0, len(inputs), step)]


def batch_source(data: Data, batch_size: int | None) -> Iterable[Batch]:
    """Batches that every matvec can iterate again, in the same order.

    A one-shot iterator (a generator) is kept as a list, since Lanczos passes over the data once per step;
    a DataLoader is iterated afresh each time and must not shuffle or augment, or the operator would change
    between steps.
    """
    if is_tensor_pair(data):
        return chunk_pair(data[0], data[1], batch_size)
    if batch_size is not None:
        raise ValueError(
            f"batch_size={batch_size} applies to an (inputs, targets) tensor pair; "
            "an iterable of batches brings its own batch size"
        )
    if iter(data) is data:
        return list(data)
    return data
