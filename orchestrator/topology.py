"""Where the cluster's nodes are, as far as it decides what the tracking store must be."""

from __future__ import annotations

import socket
from typing import Callable, Iterable, Optional

from orchestrator.errors import UserError
from orchestrator.tracking import TrackingTarget


def is_this_host(address: str) -> bool:
    """An address is this machine's when a socket can bind to it (loopback or one of its interfaces)."""
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def remote_nodes(addresses: Iterable[str], is_local: Callable[[str], bool] = is_this_host) -> list[str]:
    return sorted({a for a in addresses if not is_local(a)})


def alive_node_addresses() -> list[str]:
    import ray

    return [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]]


def refuse_remote_nodes_with_local_store(target: TrackingTarget, addresses: Optional[Iterable[str]] = None) -> None:
    """The local store's server listens on 127.0.0.1 of this machine: a node on another host could not log.
    ``addresses``: the cluster's node addresses (default: the alive nodes of the connected Ray)."""
    if not target.needs_local_server:
        return
    remote = remote_nodes(alive_node_addresses() if addresses is None else addresses)
    if remote:
        store = "tracking.uri=sqlite:///..." if target.uri else "the local store"
        raise UserError(f"cluster nodes on other hosts ({', '.join(remote)}) cannot reach {store}, which is served "
                        "on 127.0.0.1 of this machine; give tracking.uri=http://HOST:PORT of an MLflow server they can reach")

