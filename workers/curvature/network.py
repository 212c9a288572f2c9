"""The part Hessian and GGN share: a network's mean loss over a data set as a function of chosen parameters."""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from workers.curvature.batchnorm import replace_batch_norms_
from workers.curvature.batches import Data, batch_source, is_tensor_pair
from workers.curvature.folding import fold_batch_norms_
from workers.curvature.operators import CurvatureOperator
from workers.curvature.validation import require_choice

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# What a subclass builds from one batch before seeing v: the graph that products backpropagate through.
Linearisation = Any
BN_MODES = ("train", "eval")
FLOAT_DTYPES = (torch.float32, torch.float64)


def select_parameters(model: nn.Module, prefixes: str | Sequence[str] | None) -> list[str]:
    """Names of the parameters a curvature operator acts on, in `named_parameters` order.

    A prefix selects a module subtree ("features.0") or one parameter ("fc.bias"); "fc1" does not select
    "fc10.weight".
    """
    names = [name for name, _ in model.named_parameters()]
    if not names:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters to take curvature over")
    if prefixes is None:
        return names
    wanted = [prefixes] if isinstance(prefixes, str) else list(prefixes)

    def matches(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unmatched = [p for p in wanted if not any(matches(n, p) for n in names)]
    if unmatched:
        raise ValueError(f"params={unmatched} match no parameter of the model; its parameters are {names}")
    return [n for n in names if any(matches(n, p) for p in wanted)]


def private_copy(
    model: nn.Module, bn_mode: str, dtype: torch.dtype, device: torch.device | str | None
) -> nn.Module:
    """A copy of the model that the operator may change freely; the user's model is never touched.

    Every module is put in eval mode, so dropout is off and each matvec is the same linear map. BatchNorm
    layers become their elementwise form (cheap to differentiate twice), normalising with batch statistics for
    bn_mode="train" and with their running statistics for "eval", and updating nothing; in "eval", those right
    after a convolution are folded into it.
    """
    replica = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    # Gradients left by training were copied along; products never read them.
    replica.zero_grad(set_to_none=True)
    if bn_mode == "eval":
        fold_batch_norms_(replica)
    return replace_batch_norms_(replica, batch_statistics=bn_mode == "train")


class NetworkOperator(CurvatureOperator):
    """Curvature of the mean loss over all the data, R(w) = sum_b (n_b / N) loss_b(w), at the model's weights.

    `loss_fn(outputs, targets)` must reduce by the mean over its batch. Batches are visited in the data's
    order, so a matvec is deterministic. Subclasses split the product for one batch in two: `_linearise`
    builds the graph (forward and first backward, independent of v), `_apply` backpropagates v through it.
    When all the data is one batch its graph is kept between products, so each product is a single backward
    pass; that graph is what any product holds at its peak anyway, so keeping it costs no extra peak memory.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Data,
        *,
        bn_mode: str = "eval",
        params: str | Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> None:
        require_choice("bn_mode", bn_mode, BN_MODES)
        require_choice("dtype", dtype, FLOAT_DTYPES)
        names = select_parameters(model, params)
        self._module = private_copy(model, bn_mode, dtype, device)
        by_name = dict(self._module.named_parameters())
        for name, param in by_name.items():
            param.requires_grad_(name in names)
        self._params = [by_name[n] for n in names]
        self._loss_fn = loss_fn
        if is_tensor_pair(data):
            data = (self._place(data[0]), self._place(data[1]))
        self._batches = batch_source(data, batch_size)
        self._keep_graph = isinstance(self._batches, list) and len(self._batches) == 1
        self._kept: Linearisation | None = None

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self._params)

    @property
    def device(self) -> torch.device:
        return self._params[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self._params[0].dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if v.shape != (self.size,):
            raise ValueError(f"v has shape {tuple(v.shape)}; this operator takes vectors of shape ({self.size},)")
        v = v.to(self.device, self.dtype)
        pieces = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in self._params]), self._params, strict=True)]
        # The sample-weighted mean over batches, summed then divided: a running mean rounds differently from a sum
        # (the sharded operator sums its ranks' weighted products), and near invariance that moves Lanczos's stop.
        # Data of one batch (the kept graph's case) is its own mean and costs no pass over the result.
        total: torch.Tensor | None = None
        count = batches = 0
        # Products differentiate whatever the caller's grad mode, e.g. inside an evaluation's no_grad block.
        with torch.enable_grad():
            for inputs, targets in self._batches:
                product = torch.cat([t.reshape(-1) for t in self._apply(self._linearisation(inputs, targets), pieces)])
                if batches == 1:
                    total.mul_(count)  # a second batch: the first one's product is weighed now
                total = product if total is None else total.add_(product, alpha=len(inputs))
                count += len(inputs)
                batches += 1
        if count == 0:
            raise ValueError("the data hold no samples")
        return total if batches == 1 else total.div_(count)

    def _linearisation(self, inputs: torch.Tensor, targets: torch.Tensor) -> Linearisation:
        if self._kept is not None:
            return self._kept
        state = self._linearise(self._place(inputs), self._place(targets))
        if self._keep_graph:
            self._kept = state
        return state

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        """On the operator's device; floating data in its dtype (float64 models need float64 inputs)."""
        dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.to(self.device, dtype)

    @abstractmethod
    def _linearise(self, inputs: torch.Tensor, targets: torch.Tensor) -> Linearisation:
        """The graph of one batch that `_apply` backpropagates through."""

    @abstractmethod
    def _apply(self, state: Linearisation, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """The batch's curvature (of its mean loss) times v, one tensor per parameter; keeps the graph."""
