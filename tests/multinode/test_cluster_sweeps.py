"""Sweeps on a real three-node Ray cluster with token auth: trials spread over the nodes and record theirs; a lost
node's trial resumes on another node in the same run, against every store a lab uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from orchestrator.mlflow_server import local_store
from ray_cluster import RayCluster, find_node
from sweep_cli import run_sweep_cli
from tracking_servers import ADMIN_USER, AUTH_PASSWORD, StockServer
from workers.tracking_endpoint import PASSWORD_ENV, USERNAME_ENV, TrackingEndpoint

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")


@dataclass(frozen=True)
class Store:
    arguments: tuple[str, ...]
    env: dict[str, str]
    reader: Callable[[Path], MlflowClient]
    # Whether the store can be read yet (the embedded one: once the sweep's server has created it).
    ready: Callable[[Path], bool] = lambda cwd: True


def _local_server_up(cwd: Path) -> bool:
    """The sweep's local server answered its health check, so the database it creates is complete: reading it
    earlier would race the server's schema migrations."""
    log = cwd / ".sweeps" / "mlflow-server.log"
    return log.exists() and '"GET /health HTTP/1.1" 200' in log.read_text()


@pytest.fixture(params=["embedded", "stock-sqlite", "stock-postgres", "auth-env"])
def store(request: pytest.FixtureRequest, experiment: str) -> Store:
    named = (f"tracking.experiment={experiment}",)
    if request.param == "embedded":
        return Store(named, {"MLFLOW_TRACKING_URI": ""},
                     lambda cwd: MlflowClient(local_store(cwd / ".sweeps")[0]), _local_server_up)
    if request.param == "auth-env":
        server: StockServer = request.getfixturevalue("auth_server")
        endpoint = TrackingEndpoint(server.uri, ADMIN_USER, AUTH_PASSWORD)
        return Store((f"tracking.uri={server.uri}", *named), {USERNAME_ENV: ADMIN_USER, PASSWORD_ENV: AUTH_PASSWORD},
                     lambda cwd: endpoint.client())
    server = request.getfixturevalue("stock_server" if request.param == "stock-sqlite" else "postgres_server")
    return Store((f"tracking.uri={server.uri}", *named), {}, lambda cwd: MlflowClient(server.uri))


def _trial_runs(client: MlflowClient, experiment: str) -> list[Run]:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.kind = 'trial'", max_results=100) if exp else []


def _experiment(store: Store) -> str:
    return next(a.split("=", 1)[1] for a in store.arguments if a.startswith("tracking.experiment="))


def _assert_every_epoch_once(client: MlflowClient, run: Run, epochs: int) -> None:
    for metric in METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(1, epochs + 1)), (metric, steps)


def test_trials_spread_over_the_nodes_and_record_theirs(two_workers: RayCluster, stock_server: StockServer,
                                                        tmp_path: Path, experiment: str) -> None:
    result = run_sweep_cli("run", "-m", "optimizer.lr=0.01,0.02,0.03,0.04", "dataset=digits", "trainer.epochs=3",
                           f"cluster.address={two_workers.address}", f"tracking.uri={stock_server.uri}",
                           f"tracking.experiment={experiment}", cwd=tmp_path, env=two_workers.env)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = _trial_runs(MlflowClient(stock_server.uri), experiment)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    used = {r.data.tags["node_id"] for r in runs}
    assert used == set(two_workers.node_ids().values()), "both worker nodes ran trials (the head has no CPUs)"

    status = run_sweep_cli("status", f"tracking.uri={stock_server.uri}", f"tracking.experiment={experiment}",
                           cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert all(node_id[:8] in status.stdout for node_id in used), status.stdout
    token = two_workers.token
    assert token not in result.stdout + result.stderr + status.stdout
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert not [k for r in runs for k, v in {**r.data.params, **r.data.tags}.items() if token in v]


def test_a_lost_node_s_trial_resumes_on_another_node(two_workers: RayCluster, store: Store, tmp_path: Path) -> None:
    epochs, every = 10, 2
    experiment = _experiment(store)
    # A small model whose epochs pause half a second (a test-only fault): the node dies mid-trial on any machine,
    # and the test spends its time on the loss and the recovery, not on arithmetic.
    faults = {f"trainer.epochs={epochs}": {"sleep_per_epoch_s": 0.5}}
    sweep = subprocess.Popen(
        [str(Path(sys.executable).with_name("sweep")), "run", "dataset=digits", "model.hidden_sizes=[64]",
         f"trainer.epochs={epochs}", f"checkpoint.every={every}", f"cluster.address={two_workers.address}",
         *store.arguments],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, **two_workers.env, **store.env, "SWEEP_FAULTS": json.dumps(faults)},
    )
    deadline = time.monotonic() + 300
    run = None
    while run is None or int(run.data.tags.get("epoch", 0)) < 3:
        if sweep.poll() is not None or time.monotonic() > deadline:
            sweep.kill()
            pytest.fail(f"the trial never reached its third epoch: {sweep.communicate()[0]}")
        time.sleep(0.5)
        if store.ready(tmp_path):
            runs = _trial_runs(store.reader(tmp_path), experiment)
            run = runs[0] if runs else None
    lost_node = run.data.tags["node_id"]
    node = find_node(two_workers, lost_node)
    assert node is not None
    node.kill()
    killed_at = time.time()

    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, output
    client = store.reader(tmp_path)
    (run,) = _trial_runs(client, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.tags["attempts"] == "2", "Ray retried the task once, in the same run"
    assert run.data.tags["node_id"] != lost_node, "the retry ran on the surviving node"
    recomputed = int(run.data.tags["recomputed_epochs"])
    assert recomputed <= every and int(run.data.tags["resumed_from_epoch"]) >= 2
    _assert_every_epoch_once(client, run, epochs)
    restarted = min(m.timestamp for m in client.get_metric_history(run.info.run_id, "test_acc")
                    if m.step == int(run.data.tags["resumed_from_epoch"]) + recomputed + 1) / 1000
    print(f"node loss: resumed from epoch {run.data.tags['resumed_from_epoch']}, recomputed {recomputed} epoch(s); "
          f"first new epoch logged {restarted - killed_at:.1f} s after the kill")


def test_a_sharded_spectrum_runs_its_workers_on_two_nodes(two_workers: RayCluster, stock_server: StockServer,
                                                          tmp_path: Path, experiment: str) -> None:
    result = run_sweep_cli("run", "dataset=digits", "trainer.epochs=2", "model.hidden_sizes=[16]", "spectrum=slq",
                           "spectrum.num_workers=2", "spectrum.cpus_per_worker=1", "spectrum.steps=10",
                           "spectrum.num_vectors=1", "spectrum.max_samples=256", "spectrum.batch_size=128", "spectrum.dtype=float64",
                           f"cluster.address={two_workers.address}", f"tracking.uri={stock_server.uri}",
                           f"tracking.experiment={experiment}", cwd=tmp_path, env=two_workers.env)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(stock_server.uri)
    (run,) = _trial_runs(client, experiment)
    assert run.info.status == "FINISHED" and run.data.metrics["lambda_max"] > 0
    ranks = run.data.tags["spectrum_nodes"].split(",")
    assert len(ranks) == 2 and set(ranks) == set(two_workers.node_ids().values()), "one worker on each node"
