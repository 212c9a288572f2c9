"""Operator kinds by the names settings use."""

from __future__ import annotations

from workers.curvature.ggn import GGNOperator
from workers.curvature.hessian import HessianOperator
from workers.curvature.network import NetworkOperator

OPERATOR_KINDS: dict[str, type[NetworkOperator]] = {"hessian": HessianOperator, "ggn": GGNOperator}
