"""A three-node Ray cluster (a head without CPUs and two 1-CPU worker nodes, token auth on), for the tests in this
folder; they run only inside the private network namespace that ``tests/test_multinode.py`` makes for them."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from ray_cluster import RayCluster, connect_driver, worker_names

WORKERS = ("a", "b")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    import ray

    cluster = RayCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start_head()
    try:
        connect_driver(cluster)
        for name in WORKERS:
            cluster.join_worker(name)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


@pytest.fixture
def two_workers(cluster: RayCluster) -> RayCluster:
    """Both worker nodes alive (a node lost by an earlier test joins again), under fresh names."""
    for index in range(len(WORKERS) - len(worker_names(cluster))):
        cluster.join_worker(f"r{int(time.monotonic() * 1000)}-{index}")
    return cluster
