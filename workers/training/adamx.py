"""AdamW with partial adaptivity (GadamX's base optimizer; Padam-style exponent, Chen et al. 2020).

    w <- w * (1 - lr_t * weight_decay)                     (decoupled decay, before the moment updates)
    m <- beta1 * m + (1 - beta1) * g,   v <- beta2 * v + (1 - beta2) * g^2
    w <- w - lr_t * m_hat / (v_hat^p + eps),   m_hat = m / (1 - beta1^k),   v_hat = v / (1 - beta2^k)

with p in (0, 0.5]. At p = 0.5 it is AdamW; the arithmetic mirrors ``torch.optim.AdamW``'s CPU path op for op
(``v_hat^p`` as ``v^p / (1 - beta2^k)^p``), so the two agree bit for bit there. Smaller p moves the update
towards SGD with momentum, whose good generalisation GadamX combines with Adam's speed.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor


class PartiallyAdaptiveAdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        p: float = 0.125,
    ) -> None:
        if not 0 < p <= 0.5:
            raise ValueError(f"p={p}: must be in (0, 0.5]")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "p": p})

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Parameters whose moments have seen the same number of steps share one set of foreach kernels.
            buckets: dict[float, tuple[list[Tensor], ...]] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("PartiallyAdaptiveAdamW does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                bucket = buckets.setdefault(float(state["step"]), ([], [], [], []))
                for items, value in zip(bucket, (param, param.grad, state["exp_avg"], state["exp_avg_sq"])):
                    items.append(value)
            for step, (params, grads, exp_avgs, exp_avg_sqs) in buckets.items():
                _update(params, grads, exp_avgs, exp_avg_sqs, step, group)
        return loss


def _update(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
            step: float, group: dict) -> None:
    lr, eps, weight_decay, p = group["lr"], group["eps"], group["weight_decay"], group["p"]
    beta1, beta2 = group["betas"]
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    # sqrt, not pow(0.5), keeps p = 0.5 identical to AdamW.
    denom = torch._foreach_sqrt(exp_avg_sqs) if p == 0.5 else torch._foreach_pow(exp_avg_sqs, p)
    torch._foreach_div_(denom, bias_correction2**p)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr / bias_correction1)
