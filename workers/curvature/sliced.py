"""One rank's view of a gang's operator when the gang also shares the Lanczos basis.

Vectors are sliced over the ranks (`Sliced` layout): a product gathers the whole vector, applies this rank's
shard of the data, sums the shards' products over the gang and keeps this rank's slice. Whole vectors exist
only for the duration of a product; what persists between products (the basis) is sliced.
"""

from __future__ import annotations

import torch

from workers.curvature.layout import Sliced
from workers.curvature.operators import CurvatureOperator


class SlicedOperator(CurvatureOperator):
    """sum over ranks of share_r * shard_r(v), taking and returning this rank's slice of v.

    Every rank must call `matvec` the same number of times in the same order (each call is two collectives),
    which Lanczos does: its branches depend only on gang-wide sums.
    """

    def __init__(self, shard: CurvatureOperator, share: float, layout: Sliced) -> None:
        self._shard = shard
        self._share = share
        self._layout = layout

    @property
    def size(self) -> int:
        return self._shard.size

    @property
    def device(self) -> torch.device:
        return self._shard.device

    @property
    def dtype(self) -> torch.dtype:
        return self._shard.dtype

    @property
    def layout(self) -> Sliced:
        return self._layout

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        product = self._shard.matvec(self._layout.gather(v)).mul_(self._share)
        return self._layout.local(self._layout.sum(product))
