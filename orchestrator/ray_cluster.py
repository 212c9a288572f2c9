"""Connect to the Ray that runs the trials: a local one by default, an existing cluster by address."""

from __future__ import annotations

import os
import socket
from typing import Optional
from urllib.parse import urlparse

from orchestrator.errors import UserError
from orchestrator.settings import apply_local_only_env
from workers.trial_config import ClusterConfig


def resolve_address(cluster: ClusterConfig) -> Optional[str]:
    """``cluster.address``, else ``RAY_ADDRESS`` (as Ray users expect), else None for a local Ray."""
    return cluster.address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with one line: ``ray.init`` on a dead address waits a long time before it gives up."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise UserError(f"cluster.address={address}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as error:
        raise UserError(f"cluster.address={address}: cannot reach a Ray cluster there ({error.strerror or error})") from None


def connect(cluster: ClusterConfig) -> None:
    import ray

    apply_local_only_env()
    if ray.is_initialized():
        return
    address = resolve_address(cluster)
    if address is None:
        ray.init(num_cpus=cluster.local_num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        return
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as error:
        raise UserError(f"cluster.address={address}: {str(error).splitlines()[0]}") from None
