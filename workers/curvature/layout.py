"""Where the entries of an operator's vectors live: whole in this process, or sliced over a process group.

Lanczos only needs a vector's local part and a sum over the processes that hold the other parts; with that
it runs unchanged in every rank of a gang, each rank keeping its slice of every basis vector, so that the
basis (steps x P numbers, the largest thing a spectrum holds) costs each rank steps x P / k.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


class Whole:
    """Every vector held entire by this process: nothing to slice, nothing to sum."""

    def local_size(self, size: int) -> int:
        return size

    def local(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t


WHOLE = Whole()


class Sliced:
    """Vectors of `size` entries cut into `world_size` equal contiguous slices, zero-padded at the end; this
    rank holds slice `rank`. Sums are all-reduces on `device` (the process group's: NCCL needs CUDA tensors).

    Padding keeps every slice the same length, which all-gather needs; it stays zero through Lanczos, since
    products put zeros there and every basis vector is a combination of products and the seed.
    """

    def __init__(self, size: int, rank: int, world_size: int, device: torch.device) -> None:
        self.size = size
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.slice_size = math.ceil(size / world_size)

    def local_size(self, size: int) -> int:
        if size != self.size:
            raise ValueError(f"this layout slices vectors of {self.size} entries, not {size}")
        return self.slice_size

    def local(self, v: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a whole vector, padded with zeros to the common slice length."""
        start = self.rank * self.slice_size
        part = v[start : start + self.slice_size]
        return torch.nn.functional.pad(part, (0, self.slice_size - len(part)))

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """t summed over the gang; t itself may be overwritten (callers pass temporaries: a full-size copy
        of a product would be one more vector of P entries per step)."""
        total = t.to(self.device)
        dist.all_reduce(total)
        return total.to(t.device)

    def gather(self, part: torch.Tensor) -> torch.Tensor:
        """The whole vector (without padding) from every rank's slice."""
        padded = torch.empty(self.world_size * self.slice_size, dtype=part.dtype, device=self.device)
        dist.all_gather_into_tensor(padded, part.to(self.device))
        return padded[: self.size]
