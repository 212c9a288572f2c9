"""Training-batch augmentation on whole batch tensors: no per-image Python, deterministic given a generator."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RandomCropFlip:
    """Pad each image by ``padding`` pixels of ``fill`` (one value per channel), crop a random window of the
    original size, and flip it horizontally with probability 1/2 (the standard CIFAR augmentation).

    Offsets and flips are drawn from ``generator`` (on its device), so equal generator states give equal batches.
    """

    padding: int
    fill: tuple[float, ...]

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = batch.shape
        pad = self.padding
        padded = batch.new_empty((n, c, h + 2 * pad, w + 2 * pad))
        padded[:] = torch.tensor(self.fill, dtype=batch.dtype, device=batch.device).view(1, c, 1, 1)
        padded[:, :, pad : pad + h, pad : pad + w] = batch
        offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=generator.device).to(batch.device)
        flips = torch.randint(0, 2, (n, 1), generator=generator, device=generator.device).to(batch.device).bool()
        cols = torch.arange(w, device=batch.device)
        # A flipped crop reads its columns right to left: one gather does both.
        cols = offsets[1, :, None] + torch.where(flips, cols.flip(0), cols)
        rows = offsets[0, :, None] + torch.arange(h, device=batch.device)
        index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        return padded.view(n, c, -1).gather(2, index).view(n, c, h, w)
