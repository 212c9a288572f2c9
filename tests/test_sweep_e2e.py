"""A real sweep through the `sweep` command: Hydra multirun -> Ray tasks -> PyTorch training -> MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from run_checkpoints import download_checkpoint
from sweep_cli import run_sweep_cli, run_sweep_here
from orchestrator.mlflow_server import local_store
from workers.artifacts import STATUS_SUMMARY

pytestmark = pytest.mark.slow

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")
EPOCHS = 5


def _runs(client: MlflowClient, experiment: str, kind: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.kind = '{kind}'", max_results=1000)


def test_grid_of_eight_on_a_real_ray_and_server(tmp_path: Path, ray_address: str, mlflow_uri: str, experiment: str) -> None:
    args = ["run", "-m", "optimizer=sgd,adam", "optimizer.lr=0.01,0.1", "optimizer.weight_decay=0,1e-4",
            "dataset=digits", f"trainer.epochs={EPOCHS}", f"tracking.uri={mlflow_uri}",
            f"tracking.experiment={experiment}", f"cluster.address={ray_address}", "cluster.num_cpus=0.5"]
    result = run_sweep_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finished" in result.stdout

    client = MlflowClient(mlflow_uri)
    (parent,) = _runs(client, experiment, "sweep")
    children = _runs(client, experiment, "trial")
    assert len(children) == 8
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["sweep_id"] for c in children} == {parent.data.tags["sweep_id"]}
    assert len({c.data.tags["trial_id"] for c in children}) == 8
    grid = {(c.data.params["optimizer.name"], float(c.data.params["optimizer.lr"]),
             float(c.data.params["optimizer.weight_decay"])) for c in children}
    assert grid == {(o, lr, wd) for o in ("sgd", "adam") for lr in (0.01, 0.1) for wd in (0.0, 1e-4)}

    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["trainer.epochs"] == str(EPOCHS)
        assert child.data.params["dataset.name"] == "digits"
        for metric in METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (metric, steps)
        checkpoint = download_checkpoint(client, child.info.run_id, EPOCHS, tmp_path)
        state = torch.load(checkpoint, weights_only=True)
        assert state["epoch"] == EPOCHS
        assert state["model"]["1.weight"].shape == (100, 64)
        if child.data.params["optimizer.name"] == "sgd" and child.data.params["optimizer.lr"] == "0.01":
            assert child.data.metrics["test_acc"] > 0.85

    # The sweep's coordinator kept its status summary, up to date before it ended the parent run; the end of `sweep
    # run` read through it and had nothing better to keep.
    summary = json.loads(Path(client.download_artifacts(parent.info.run_id, STATUS_SUMMARY, str(tmp_path))).read_text())
    assert len(summary["rows"]) == 8 and summary["read_at"] * 1000 <= parent.info.end_time

    # Re-running the same command is idempotent: every trial is skipped, no run is added or touched.
    end_times = {c.info.run_id: c.info.end_time for c in children}
    again = run_sweep_here(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "8 trial(s), 0 to run, skipping 8 finished" in again.stdout
    rerun = _runs(client, experiment, "trial")
    assert {c.info.run_id: c.info.end_time for c in rerun} == end_times

    status = run_sweep_here("status", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("finished") == 8
    assert parent.data.tags["sweep_id"] in status.stdout


def test_local_store_takes_eight_concurrent_writers(tmp_path: Path, ray_address: str) -> None:
    """The default store (sqlite behind a local server the orchestrator starts) with 8 trials logging at once on
    mnist5k; afterwards every metric of every epoch is there, read straight from the sqlite file."""
    result = run_sweep_here(
        "run", "-m", "optimizer.lr=0.01,0.02", "optimizer.weight_decay=0,1e-5,1e-4,1e-3", f"trainer.epochs={EPOCHS}",
        f"cluster.address={ray_address}", "cluster.num_cpus=0.25", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(local_store(tmp_path / ".sweeps")[0])
    children = _runs(client, "curvature-sweeps", "trial")
    assert len(children) == 8
    for child in children:
        assert child.data.params["dataset.name"] == "mnist5k"
        for metric in METRICS:
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), (child.info.run_id, metric)
        assert child.data.metrics["test_acc"] > 0.85
        starts = json.loads(child.data.tags["overrides"])
        assert any(o.startswith("optimizer.lr=") for o in starts)
    log = (tmp_path / ".sweeps" / "mlflow-server.log").read_text()
    assert "database is locked" not in log


def test_basic_launcher_runs_in_process(tmp_path: Path, mlflow_uri: str, experiment: str) -> None:
    """`hydra/launcher=basic` keeps working as a sequential, in-process debugging mode (no Ray)."""
    result = run_sweep_cli("run", "-m", "hydra/launcher=basic", "optimizer.lr=0.01,0.05", "dataset=digits",
                           "trainer.epochs=2", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}",
                           cwd=tmp_path, env={"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    children = _runs(MlflowClient(mlflow_uri), experiment, "trial")
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.01", "0.05"]
    assert all(c.info.status == "FINISHED" for c in children)


def test_a_users_sqlite_uri_is_served_to_concurrent_trials(tmp_path: Path, ray_address: str) -> None:
    """`tracking.uri=sqlite:///...` with four trials logging at once goes through a server (as the local store does),
    never "database is locked"; new runs' artifacts go beside the database."""
    database = tmp_path / "lab" / "runs.db"
    database.parent.mkdir()
    result = run_sweep_here("run", "-m", "optimizer.lr=0.01,0.02,0.03,0.04", "dataset=digits", "trainer.epochs=3",
                           f"tracking.uri=sqlite:///{database}", f"cluster.address={ray_address}",
                           "cluster.num_cpus=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{database}")
    children = _runs(client, "curvature-sweeps", "trial")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "test_acc")) == [1, 2, 3]
        assert child.info.artifact_uri.startswith((database.parent / "mlruns").as_uri())
    assert "database is locked" not in (database.parent / "mlflow-server.log").read_text()
