"""A real multi-node Ray cluster started the way an operator starts one: ``ray start --head`` and ``ray start
--address`` per worker node, token authentication on.

On one machine the nodes share 127.0.0.1, which only works inside a private network namespace (see
``test_multinode.py``, which re-runs ``tests/multinode/`` inside ``unshare -n``). Every node runs ``--block`` in a
process group of its own, so losing a node is one ``killpg`` (its raylet and all its workers) and nothing else on the
machine is touched; ``ray stop`` is never used.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from orchestrator.mlflow_server import free_port

NODE_RESOURCE_PREFIX = "test_node_"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Lose the node: SIGKILL to its whole process group (raylet, object store, workers)."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class RayCluster:
    directory: Path
    head_port: int = field(default_factory=free_port)
    # The namespace's token (test_multinode.py sets it for the whole suite), else a new one.
    token: str = field(default_factory=lambda: os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32))
    nodes: dict[str, RayNode] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.head_port}"

    @property
    def env(self) -> dict[str, str]:
        """What every node and every client of this cluster needs (environment.md: Ray in a namespace)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
                "RAY_USAGE_STATS_ENABLED": "0"}

    def _start(self, name: str, arguments: list[str]) -> RayNode:
        ray = str(Path(sys.executable).with_name("ray"))
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - the node process owns it
        process = subprocess.Popen([ray, "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                                    *arguments], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **self.env})
        node = RayNode(name, process)
        self.nodes[name] = node
        return node

    def start_head(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # No CPUs on the head: trials run on worker nodes, which the tests can then lose.
        self._start("head", ["--head", "--port", str(self.head_port), "--num-cpus", "0", "--include-dashboard", "false",
                             "--temp-dir", str(self.directory / "ray")])

    def add_worker(self, name: str, cpus: int = 1) -> RayNode:
        return self._start(name, ["--address", self.address, "--num-cpus", str(cpus),
                                  "--resources", json.dumps({f"{NODE_RESOURCE_PREFIX}{name}": 1})])

    def join_worker(self, name: str, attempts: int = 3) -> str:
        """Start a worker node and wait until the cluster lists it; one node at a time, since a node that starts
        while the head is busy may time out ("The current node timed out during startup"), which is retried."""
        for attempt in range(attempts):
            node = self.add_worker(name)
            try:
                return self.wait_for_workers([name])[name]
            except RuntimeError:
                node.kill()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def node_ids(self) -> dict[str, str]:
        """Worker name -> Ray node id of the alive worker nodes, as the cluster reports them."""
        import ray

        ids = {}
        for node in ray.nodes():
            for resource in node["Resources"]:
                if node["Alive"] and resource.startswith(NODE_RESOURCE_PREFIX):
                    ids[resource[len(NODE_RESOURCE_PREFIX):]] = node["NodeID"]
        return ids

    def wait_for_workers(self, names: list[str]) -> dict[str, str]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ids = self.node_ids()
            if set(names) <= ids.keys():
                return ids
            dead = [self.nodes[n] for n in names if not self.nodes[n].alive]
            if dead or time.monotonic() > deadline:
                logs = {n.name: (self.directory / f"{n.name}.log").read_text()[-2000:] for n in self.nodes.values()}
                raise RuntimeError(f"worker nodes {names} did not join (have {sorted(ids)}): {logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of what lingers: worker nodes stop in a second, but a head given SIGTERM waits ~30 s
        for its lost nodes' health checks, and nothing of a test cluster needs that grace."""
        for node in reversed(list(self.nodes.values())):
            if node.alive:
                os.killpg(node.process.pid, signal.SIGTERM)
            try:
                node.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                node.kill()


def connect_driver(cluster: RayCluster) -> None:
    """This process as a client of the cluster (to read its nodes). Ray reads RAY_AUTH_MODE when it is first
    imported, so the process must have started with the cluster's settings (test_multinode.py starts it so)."""
    import ray

    assert os.environ.get("RAY_AUTH_MODE") == "token" and os.environ.get("RAY_AUTH_TOKEN") == cluster.token
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def worker_names(cluster: RayCluster, alive_only: bool = True) -> list[str]:
    return [name for name, node in cluster.nodes.items() if name != "head" and (node.alive or not alive_only)]


def find_node(cluster: RayCluster, node_id: str) -> Optional[RayNode]:
    return next((cluster.nodes[name] for name, nid in cluster.node_ids().items() if nid == node_id), None)
