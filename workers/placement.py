"""Which machine a worker runs on, as Ray sees it (or this host, outside Ray)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Placement:
    # The node's IP as the cluster knows it; nodes that share a host (as in tests) share it too.
    address: str
    # Tells nodes apart: a Ray node id, empty outside Ray.
    node_id: str


def where_am_i() -> Placement:
    import ray

    if ray.is_initialized():
        return Placement(ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id())
    return Placement(socket.gethostname(), "")


def task_attempt() -> Optional[int]:
    """Which execution of the current Ray task this is (0: the first, n: Ray's n-th retry after a worker died or a
    retryable error); None outside a Ray task or where Ray does not say, so callers fall back to reading the run."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        # Not in RuntimeContext's public surface in Ray 2.60; the core worker has known it since 2.3.
        attempt = ray._private.worker.global_worker.core_worker.get_current_task_attempt_number()
    except Exception:  # noqa: BLE001 - any doubt means "read the run"
        return None
    return attempt if isinstance(attempt, int) and attempt >= 0 else None
