"""The one abstraction the algorithms see: a symmetric linear operator known only through matvec."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from workers.curvature.layout import WHOLE, Sliced, Whole


class CurvatureOperator(ABC):
    """Symmetric matrix-free operator on flat vectors of `size` entries.

    `layout` says how those vectors are held; an operator run inside a gang may hold only its slice of each,
    and then `matvec` takes and returns slices (see `workers.curvature.layout`).
    """

    @property
    def layout(self) -> Whole | Sliced:
        """How this process holds a vector: whole, unless the operator says otherwise."""
        return WHOLE

    @property
    @abstractmethod
    def size(self) -> int:
        """Length of the vectors `matvec` takes and returns."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Device of `matvec`'s input and output."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """Dtype of `matvec`'s input and output."""

    @abstractmethod
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """`M @ v` for a flat vector `v` of `size` entries (its local part under a sliced layout); must not
        modify `v`."""


class LambdaOperator(CurvatureOperator):
    """A callable or an explicit symmetric matrix as an operator: ground truth and special cases in tests."""

    def __init__(
        self,
        matvec: Callable[[torch.Tensor], torch.Tensor],
        size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self._matvec = matvec
        self._size = size
        self._device = torch.device(device)
        self._dtype = dtype

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor) -> LambdaOperator:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix of shape {tuple(matrix.shape)} is not square")
        return cls(matrix.mv, matrix.shape[0], device=matrix.device, dtype=matrix.dtype)

    @property
    def size(self) -> int:
        return self._size

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matvec(v)
