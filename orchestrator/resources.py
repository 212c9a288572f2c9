"""Resources no node of the cluster can ever give are refused before launch; resources that are only busy wait."""

from __future__ import annotations

from typing import Iterable, Mapping

from orchestrator.errors import UserError
from workers.trial_config import ClusterConfig, SpectrumConfig


def alive_node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def check_satisfiable(cluster: ClusterConfig, spectrum: SpectrumConfig,
                      nodes: Iterable[Mapping[str, float]]) -> None:
    """One line naming the key, the request and what the cluster has (a task needs all of it on one node)."""
    nodes = list(nodes)
    requests = [("cluster.num_cpus", "CPU", cluster.num_cpus), ("cluster.num_gpus", "GPU", cluster.num_gpus)]
    if spectrum.enabled:
        requests += [("spectrum.cpus_per_worker", "CPU", spectrum.cpus_per_worker),
                     ("spectrum.gpus_per_worker", "GPU", spectrum.gpus_per_worker)]
    for key, resource, wanted in requests:
        largest = max((node.get(resource, 0.0) for node in nodes), default=0.0)
        if wanted > largest:
            total = sum(node.get(resource, 0.0) for node in nodes)
            raise UserError(f"{key}={wanted:g}: no node of the cluster has {wanted:g} {resource}(s); its largest node "
                            f"has {largest:g} ({total:g} in all, {len(nodes)} node(s))")
    if spectrum.enabled and spectrum.num_workers > 1:
        gang = spectrum.num_workers * spectrum.cpus_per_worker
        total = sum(node.get("CPU", 0.0) for node in nodes)
        if gang > total:
            raise UserError(f"spectrum.num_workers={spectrum.num_workers}: the gang needs {gang:g} CPUs at once "
                            f"(spectrum.cpus_per_worker={spectrum.cpus_per_worker:g} each); the cluster has {total:g}")
