"""Vector-Jacobian products that treat graph-less outputs as constants."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def vjp(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    """sum_i cotangent_i . d output_i / d inputs, zeros where an input is not reached.

    `torch.autograd.grad` refuses outputs without a graph, which second derivatives meet whenever a gradient
    does not depend on the parameters (a loss affine in them, a parameter the batch never reaches): the
    derivative there is zero, not an error.
    """
    live = [(out, cot) for out, cot in zip(outputs, cotangents, strict=True) if out.requires_grad]
    if not live:
        return [torch.zeros_like(x) for x in inputs]
    outs, cots = zip(*live, strict=True)
    return list(
        torch.autograd.grad(
            outs,
            inputs,
            cots,
            create_graph=create_graph,
            retain_graph=retain_graph,
            allow_unused=True,
            materialize_grads=True,
        )
    )
