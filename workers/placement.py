"""Which machine a worker runs on, as Ray sees it (or this host, outside Ray)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


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
