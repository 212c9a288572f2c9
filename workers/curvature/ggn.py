"""Generalised Gauss-Newton products J^T H_out J v of the mean loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workers.curvature.autodiff import vjp
from workers.curvature.network import NetworkOperator


@dataclass(frozen=True)
class _OutputGraph:
    outputs: torch.Tensor
    dummy: torch.Tensor
    jt_dummy: list[torch.Tensor]
    detached: torch.Tensor
    loss_grad: list[torch.Tensor]


class GGNOperator(NetworkOperator):
    """G v with G = sum_b (n_b / N) J_b^T H_b J_b: J_b the Jacobian of the batch's outputs w.r.t. the
    parameters, H_b the Hessian of the batch loss w.r.t. those outputs (see NetworkOperator for arguments).

    J v comes from reverse mode alone (the double-vjp trick: differentiate J^T u, linear in a dummy u), so
    the product needs no forward-mode rules and goes through BatchNorm in either mode.
    """

    def _linearise(self, inputs: torch.Tensor, targets: torch.Tensor) -> _OutputGraph:
        """The outputs, J^T u for a dummy u, and the loss's gradient w.r.t. detached outputs, with graphs."""
        outputs = self._module(inputs)
        dummy = torch.zeros_like(outputs, requires_grad=True)
        jt_dummy = vjp([outputs], self._params, [dummy], create_graph=True)
        detached = outputs.detach().requires_grad_(True)
        loss = self._loss_fn(detached, targets)
        loss_grad = vjp([loss], [detached], [torch.ones_like(loss)], create_graph=True)
        return _OutputGraph(outputs, dummy, jt_dummy, detached, loss_grad)

    def _apply(self, state: _OutputGraph, v: list[torch.Tensor]) -> list[torch.Tensor]:
        jv = vjp(state.jt_dummy, [state.dummy], v, retain_graph=True)[0]
        h_jv = vjp(state.loss_grad, [state.detached], [jv], retain_graph=True)[0]
        return vjp([state.outputs], self._params, [h_jv], retain_graph=True)
