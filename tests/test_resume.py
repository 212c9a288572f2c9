"""Fault tolerance with real Ray, a real MLflow server and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep_cli import run_sweep_cli, run_sweep_here
from tracking_servers import StockServer
from orchestrator.cli import main

pytestmark = pytest.mark.slow

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")


def _trial_runs(client: MlflowClient, experiment: str) -> list[Run]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.kind = 'trial'", max_results=1000)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _assert_every_epoch_once(client: MlflowClient, run: Run, epochs: int) -> None:
    for metric in METRICS:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == list(range(1, epochs + 1)), (metric, steps)


def _popen_sweep(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(Path(sys.executable).with_name("sweep")), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def test_worker_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path: Path, ray_address: str,
                                                             postgres_server: StockServer, experiment: str) -> None:
    """A stock server on PostgreSQL; the driver-death tests below run on the stock SQLite one."""
    mlflow_uri = postgres_server.uri
    epochs, every = 8, 2
    sweep = _popen_sweep("run", "model.hidden_sizes=[1024,1024]", f"trainer.epochs={epochs}", f"checkpoint.every={every}",
                         f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}",
                         f"cluster.address={ray_address}", cwd=tmp_path)
    client = MlflowClient(mlflow_uri)

    def third_epoch_running() -> bool:
        runs = _trial_runs(client, experiment)
        return bool(runs) and int(runs[0].data.tags.get("epoch", 0)) >= 3 and "worker_pid" in runs[0].data.tags

    _wait_for(third_epoch_running, 240, "the trial's third epoch")
    (run,) = _trial_runs(client, experiment)
    os.kill(int(run.data.tags["worker_pid"]), signal.SIGKILL)
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, output

    (run,) = _trial_runs(client, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.tags["attempts"] == "2", "Ray retried the task once, in the same run"
    assert int(run.data.tags["recomputed_epochs"]) <= every
    print(f"resumed from epoch {run.data.tags['resumed_from_epoch']}; recomputed epochs: {run.data.tags['recomputed_epochs']}")
    assert int(run.data.tags["resumed_from_epoch"]) >= 2
    _assert_every_epoch_once(client, run, epochs)


def _kill_driver_mid_sweep(common: list[str], tmp_path: Path, client: MlflowClient, experiment: str,
                           env: dict[str, str] | None = None) -> dict[str, Run]:
    """`sweep run` of four trials (two short, two long), killed with SIGKILL once two finished and one is under way.
    The long ones pause a second before each epoch, so they are still running when the test looks, however loaded
    the machine."""
    faults = {"trainer.epochs=20": {"sleep_per_epoch_s": 1.0}}
    sweep = _popen_sweep("run", "-m", "trainer.epochs=2,20", "optimizer.lr=0.01,0.02", "dataset=digits",
                         "checkpoint.every=1", "sweep.name=killed", *common, cwd=tmp_path,
                         env={**(env or {}), "SWEEP_FAULTS": json.dumps(faults)})

    def two_finished_one_running() -> bool:
        runs = _trial_runs(client, experiment)
        states = [r.info.status for r in runs]
        return states.count("FINISHED") >= 2 and any(int(r.data.tags.get("epoch", 0)) >= 1 for r in runs
                                                        if r.info.status == "RUNNING")

    _wait_for(two_finished_one_running, 300, "two finished trials and one under way")
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(timeout=30)
    return {r.data.tags["trial_id"]: r for r in _trial_runs(client, experiment)}


def _assert_resumed_once_each(client: MlflowClient, experiment: str, before: dict[str, Run]) -> None:
    after = _trial_runs(client, experiment)
    assert len(after) == 4, "each grid point has exactly one child run"
    assert all(r.info.status == "FINISHED" for r in after)
    for run in after:
        previous = before[run.data.tags["trial_id"]]
        if previous.info.status == "FINISHED":
            assert run.info.end_time == previous.info.end_time, "finished trials are not re-run"
            assert run.data.tags["attempts"] == "1"
        _assert_every_epoch_once(client, run, int(run.data.params["trainer.epochs"]))


def test_local_driver_killed_then_resume_at_once_takes_the_orphans(tmp_path: Path, mlflow_uri: str,
                                                                    experiment: str) -> None:
    """A local sweep's Ray dies with its driver: a resume right away, with default settings, re-runs every trial
    that did not finish (their RUNNING runs are orphans: no process holds the store's lock), and nothing else."""
    common = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", "cluster.local_num_cpus=2"]
    client = MlflowClient(mlflow_uri)
    before = _kill_driver_mid_sweep(common, tmp_path, client, experiment, env={"RAY_ADDRESS": ""})
    finished_before = [tid for tid, r in before.items() if r.info.status == "FINISHED"]
    assert 2 <= len(finished_before) < 4

    # Within moments of its process's death the sweep's coordinator cancels what is left (a trial may still have
    # finished in between): every run ends FINISHED or KILLED, none is left RUNNING.
    _wait_for(lambda: {r.info.status for r in _trial_runs(client, experiment)} <= {"FINISHED", "KILLED"}, 60,
              "the dead command's trials to end")
    after_kill = _trial_runs(client, experiment)
    killed = [r for r in after_kill if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["error"].startswith("cancelled: its `sweep` process") for r in killed)
    status = run_sweep_cli("status", "killed", *common[:2], cwd=tmp_path)
    assert "cancelled: its `sweep` process" in status.stdout, status.stdout
    before = {r.data.tags["trial_id"]: r for r in after_kill}
    resumed = run_sweep_cli("resume", "killed", *common, cwd=tmp_path, env={"RAY_ADDRESS": ""})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"4 trial(s), {len(killed)} to run" in resumed.stdout
    _assert_resumed_once_each(client, experiment, before)


def test_cluster_driver_killed_then_resume_attaches_to_the_live_coordinator(tmp_path: Path, ray_address: str,
                                                                           mlflow_uri: str, experiment: str) -> None:
    """On a cluster the sweep's coordinator outlives its driver: a resume attaches to it (one owner, nothing
    launched twice) and follows the sweep to its end."""
    common = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    client = MlflowClient(mlflow_uri)
    before = _kill_driver_mid_sweep(common, tmp_path, client, experiment)

    status = run_sweep_here("status", "killed", *common, cwd=tmp_path)
    assert "(live, from its coordinator)" in status.stdout and "running" in status.stdout, status.stdout
    resumed = run_sweep_here("resume", "killed", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "attached to its live coordinator, 0 new" in resumed.stdout, resumed.stdout
    _assert_resumed_once_each(client, experiment, before)
    assert all(r.data.tags["attempts"] == "1" for r in _trial_runs(client, experiment)), "no trial ran twice"


def test_failed_trials_are_reported_then_resumed_alone(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                       experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["dataset=digits", "trainer.epochs=4", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}",
              f"cluster.address={ray_address}", "cluster.num_cpus=0.5"]
    faults = {"optimizer.lr=0.02": {"raise_at_epoch": 2}, "optimizer.lr=0.03": {"nan_at_epoch": 1}}
    first = run_sweep_here("run", "-m", "optimizer.lr=0.01,0.02,0.03", "sweep.name=faults", *common, cwd=tmp_path,
                          env={"SWEEP_FAULTS": json.dumps(faults)})
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 of 3 trial(s) did not finish" in first.stdout
    client = MlflowClient(mlflow_uri)
    runs = {r.data.params["optimizer.lr"]: r for r in _trial_runs(client, experiment)}
    assert runs["0.01"].info.status == "FINISHED"
    assert runs["0.02"].info.status == "FAILED"
    assert runs["0.02"].data.tags["error"] == "RuntimeError: injected failure at epoch 3"
    assert runs["0.03"].info.status == "FAILED"
    assert runs["0.03"].data.tags["error"].startswith("NonFiniteLossError: loss became nan at epoch 2, step ")
    assert "Traceback" in Path(client.download_artifacts(runs["0.02"].info.run_id, "error/traceback.txt", str(tmp_path))).read_text()

    # A changed base config for the same sweep is refused, naming the changed key; nothing is launched.
    assert main(["resume", "faults", "trainer.epochs=5", *common[2:4]]) == 2
    err = capsys.readouterr().err
    assert "the base config changed (trainer.epochs: 4 -> 5)" in err and len(err.strip().splitlines()) == 1

    resumed = run_sweep_here("resume", "faults", *common[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 trial(s), 2 to run" in resumed.stdout
    after = {r.data.params["optimizer.lr"]: r for r in _trial_runs(client, experiment)}
    assert len(after) == 3
    assert after["0.01"].info.end_time == runs["0.01"].info.end_time
    for lr in ("0.02", "0.03"):
        assert after[lr].info.status == "FINISHED" and after[lr].data.tags["attempts"] == "2"
        _assert_every_epoch_once(client, after[lr], 4)


def test_listed_exceptions_are_retried_by_ray(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                               experiment: str) -> None:
    faults = {"optimizer.lr=0.01": {"raise_at_epoch": 1}, "optimizer.lr=0.02": {"raise_at_epoch": 1}}
    result = run_sweep_here(
        "run", "-m", "optimizer.lr=0.01,0.02", "dataset=digits", "trainer.epochs=2", "cluster.max_retries=2",
        "cluster.retry_exceptions=[RuntimeError]", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}",
        f"cluster.address={ray_address}", cwd=tmp_path, env={"SWEEP_FAULTS": json.dumps(faults)},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for run in _trial_runs(MlflowClient(mlflow_uri), experiment):
        assert run.info.status == "FAILED"
        assert run.data.tags["attempts"] == "3", "the first try and cluster.max_retries=2 retries"
        assert run.data.tags["error"] == "RetryableTrialError: RuntimeError: injected failure at epoch 2"
