"""The sweep's coordinator: one owner per sweep on the cluster, detach and follow, cancel then resume, unsatisfiable
resources refused, and a tracking server that goes away mid-sweep survived. Real Ray, real MLflow servers, real
signals; the pytest session's Ray serves as "the cluster" (`cluster.address`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.execution import ask_cancel_or_detach
from sweep_cli import run_sweep_cli, run_sweep_here
from tracking_servers import StockServer
from workers.trial_config import TrackingConfig

pytestmark = pytest.mark.slow
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")


def _trial_runs(client: MlflowClient, experiment: str) -> list[Run]:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.kind = 'trial'", max_results=1000) if exp else []


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _every_epoch_once(client: MlflowClient, run: Run) -> None:
    epochs = int(run.data.params["trainer.epochs"])
    for metric in METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(1, epochs + 1)), (run.info.run_id, metric, steps)


def _sweep(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(Path(sys.executable).with_name("sweep")), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def test_ctrl_c_without_a_terminal_cancels_and_a_user_may_detach() -> None:
    assert ask_cancel_or_detach(interactive=False) == "cancel"
    assert ask_cancel_or_detach(interactive=True, read=lambda prompt: "d") == "detach"
    assert ask_cancel_or_detach(interactive=True, read=lambda prompt: "c") == "cancel"


def test_detach_returns_at_once_and_status_follows_the_live_sweep(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                                   experiment: str) -> None:
    """Also: runs are created as trials are submitted, at most twice the cluster's slots ahead (the session's Ray has
    2 CPUs, a trial takes 1), so a large grid's first trial starts at once; status names the trials still queued."""
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    rates = [f"0.0{i}" for i in range(1, 7)]
    # Each epoch pauses 4 s (a test-only fault): no trial finishes before the first `sweep status` has looked.
    faults = {f"optimizer.lr={lr}": {"sleep_per_epoch_s": 4.0} for lr in rates}
    start = time.monotonic()
    detached = run_sweep_cli("run", "--detach", "-m", f"optimizer.lr={','.join(rates)}", "dataset=digits",
                             "trainer.epochs=3", "cluster.num_cpus=1", "sweep.name=detached", *where, cwd=tmp_path,
                             env={"SWEEP_FAULTS": json.dumps(faults)})
    prompt_s = time.monotonic() - start
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert "detached: the sweep runs on the cluster" in detached.stdout
    print(f"--detach returned after {prompt_s:.1f} s")

    live = run_sweep_cli("status", "detached", *where, cwd=tmp_path)
    assert "(live, from its coordinator)" in live.stdout, live.stdout
    client = MlflowClient(mlflow_uri)
    assert len(_trial_runs(client, experiment)) <= 4, "no more runs than twice the slots while none has finished"
    assert re.search(r"and [2-6] more trial\(s\) queued by its coordinator", live.stdout), live.stdout
    _wait_for(lambda: [r.info.status for r in _trial_runs(client, experiment)] == ["FINISHED"] * 6, 300,
              "the detached sweep to finish")
    done = run_sweep_cli("status", "detached", *where, cwd=tmp_path)
    assert done.stdout.count("finished") == 6, done.stdout
    parent = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.kind = 'sweep'")[0]
    _wait_for(lambda: client.get_run(parent.info.run_id).info.status == "FINISHED", 60, "the parent run to end")


def test_two_concurrent_submissions_train_each_grid_point_once(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                               experiment: str) -> None:
    args = ["run", "-m", "optimizer.lr=0.01,0.02,0.03", "dataset=digits", "trainer.epochs=4", "sweep.name=twice",
            f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}",
            "cluster.num_cpus=0.5"]
    first, second = _sweep(*args, cwd=tmp_path), _sweep(*args, cwd=tmp_path)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert sum("attached to its live coordinator" in o for o in outputs) == 1, outputs
    client = MlflowClient(mlflow_uri)
    runs = _trial_runs(client, experiment)
    assert len(runs) == 3, "one run per grid point"
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "1", "one training per grid point"
        _every_epoch_once(client, run)


def test_the_same_sweep_recorded_in_another_experiment_gets_its_own_coordinator(tmp_path: Path, ray_address: str,
                                                                                mlflow_uri: str, experiment: str) -> None:
    """A sweep id names a sweep within one store and experiment. The second command starts while the first one's
    coordinator still lingers (LINGER_S); attached to it, it would have trained nothing."""
    client = MlflowClient(mlflow_uri)
    for name in (experiment, f"{experiment}-elsewhere"):
        done = run_sweep_here("run", "dataset=digits", "trainer.epochs=1", "sweep.name=twin", f"tracking.uri={mlflow_uri}",
                             f"tracking.experiment={name}", f"cluster.address={ray_address}", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "attached" not in done.stdout, done.stdout
        assert [r.info.status for r in _trial_runs(client, name)] == ["FINISHED"], name


def test_cancel_then_resume(tmp_path: Path, ray_address: str, mlflow_uri: str, experiment: str) -> None:
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    # Each epoch pauses a second (a test-only fault): the trials are still running when the cancel comes.
    detached = run_sweep_cli("run", "--detach", "-m", "optimizer.lr=0.01,0.02", "dataset=digits", "trainer.epochs=20",
                             "checkpoint.every=1", "sweep.name=stopped", *where, cwd=tmp_path,
                             env={"SWEEP_FAULTS": json.dumps({f"optimizer.lr={lr}": {"sleep_per_epoch_s": 1.0} for lr in (0.01, 0.02)})})
    assert detached.returncode == 0, detached.stdout + detached.stderr
    client = MlflowClient(mlflow_uri)
    _wait_for(lambda: [int(r.data.tags.get("epoch", 0)) >= 2 for r in _trial_runs(client, experiment)] == [True] * 2,
              300, "both trials' second epoch (each has a checkpoint to resume from)")
    cancelled = run_sweep_here("cancel", "stopped", *where, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "sweep stopped: cancelled (2 trial(s) stopped)" in cancelled.stdout
    runs = _trial_runs(client, experiment)
    assert {r.info.status for r in runs} == {"KILLED"}
    again = run_sweep_here("cancel", "stopped", *where, cwd=tmp_path)
    assert again.returncode == 2 and "no live coordinator" in again.stderr

    resumed = run_sweep_here("resume", "stopped", *where, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for run in _trial_runs(client, experiment):
        assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "2"
        assert int(run.data.tags["resumed_from_epoch"]) >= 1, "resumed from its checkpoint, not from scratch"
        _every_epoch_once(client, run)



def test_cancel_reaching_a_coordinator_as_it_exits_finds_none(ray_address: str, mlflow_uri: str, experiment: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A coordinator exits a second after a cancel: a second `sweep cancel` may find it by name and then see it go
    (CI's loaded machine did). That is "no live coordinator", not a traceback."""
    import ray

    from orchestrator.coordinator import NAMESPACE, coordinator_name

    @ray.remote
    class ExitsWhenAsked:
        def cancel(self) -> None:
            ray.actor.exit_actor()

    name = coordinator_name("exiting", TrackingConfig(uri=mlflow_uri, experiment=experiment))
    actor = ExitsWhenAsked.options(name=name, namespace=NAMESPACE).remote()
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    assert main(["cancel", "exiting", *where]) == 2
    assert "sweep 'exiting': no live coordinator on cluster" in capsys.readouterr().err
    del actor

def test_resources_no_node_has_are_refused_before_launch(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                         experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    assert main(["run", "dataset=digits", "cluster.num_gpus=1", *where]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: cluster.num_gpus=1: no node of the cluster has 1 GPU(s); its largest node has 0 "
                   "(0 in all, 1 node(s))"), err
    assert main(["run", "dataset=digits", "cluster.num_cpus=3", *where]) == 2
    assert "cluster.num_cpus=3: no node of the cluster has 3 CPU(s); its largest node has 2" in capsys.readouterr().err
    assert MlflowClient(mlflow_uri).get_experiment_by_name(experiment) is None, "nothing was recorded"


def test_a_spectrum_job_beats_like_training(tmp_path: Path, ray_address: str, mlflow_uri: str, experiment: str) -> None:
    """The heartbeat keeps moving while the spectrum job runs, so a long spectrum is never taken for a dead trial."""
    sweep = _sweep("run", "dataset=digits", "trainer.epochs=1", "model.hidden_sizes=[256,256]", "spectrum=slq",
                   "spectrum.steps=40", "spectrum.num_vectors=3", "spectrum.dtype=float64", "spectrum.max_samples=1500",
                   "tracking.heartbeat_interval=1", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}",
                   f"cluster.address={ray_address}", cwd=tmp_path)
    client = MlflowClient(mlflow_uri)
    _wait_for(lambda: any(r.data.tags.get("epoch") == "1" for r in _trial_runs(client, experiment)), 300,
              "training to end and the spectrum job to start")
    beats = set()
    while sweep.poll() is None:
        (run,) = _trial_runs(client, experiment)
        if run.info.status == "RUNNING" and not run.data.metrics.get("lambda_max"):
            beats.add(run.data.tags["heartbeat"])
        time.sleep(1.0)
    assert sweep.returncode == 0, sweep.communicate()[0]
    assert len(beats) >= 3, f"the heartbeat moved during the spectrum job: {sorted(beats)}"
    assert _trial_runs(client, experiment)[0].data.tags["heartbeat_interval"] == "1"


# MLflow's own HTTP retry budget cut to a few seconds, through its documented variables.
CUT_BUDGET = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@pytest.mark.parametrize(("outage_s", "budget"), [(20, {}), (15, CUT_BUDGET)], ids=["20s-mlflow-default", "15s-past-budget"])
def test_a_tracking_server_restart_is_survived(outage_s: int, budget: dict[str, str],
                                               tmp_path_factory: pytest.TempPathFactory, experiment: str) -> None:
    """The stock server is killed mid-sweep and started again on the same address and store: after 20 s with
    MLflow's own retries as they come, and after 15 s with MLflow's budget cut to a second or two, so that only our
    own retrying carries the sweep through. Either way the sweep finishes by itself, exit 0, every epoch logged exactly
    once. A local sweep: its Ray's workers inherit the budget from the command. The trials pause half a second per
    epoch (a test-only fault) so that they are mid-training when the server goes.

    The outage is the time the address answers nothing: the replacement is launched early by the server's start-up
    time (measured on its first start), so that it answers again about ``outage_s`` after the kill, not a start-up
    later (on a loaded machine start-up alone takes 10-15 s, and the outage would drift past MLflow's next retry)."""
    directory = tmp_path_factory.mktemp("restarted")
    launched = time.monotonic()
    server = StockServer(directory, f"sqlite:///{directory / 'mlflow.db'}").start()
    startup_s = time.monotonic() - launched
    faults = {f"optimizer.lr={lr}": {"sleep_per_epoch_s": 0.5} for lr in (0.01, 0.02)}
    cwd = tmp_path_factory.mktemp("sweep")
    sweep = _sweep("run", "-m", "optimizer.lr=0.01,0.02", "dataset=digits", "trainer.epochs=12", "checkpoint.every=2",
                   f"tracking.uri={server.uri}", f"tracking.experiment={experiment}", "cluster.local_num_cpus=2",
                   cwd=cwd, env={**budget, "RAY_ADDRESS": "", "SWEEP_FAULTS": json.dumps(faults)})
    try:
        client = MlflowClient(server.uri)
        _wait_for(lambda: any(int(r.data.tags.get("epoch", 0)) >= 2 for r in _trial_runs(client, experiment)), 300,
                  "the trials' second epoch")
        server.stop()
        killed = time.monotonic()
        time.sleep(max(0.0, outage_s - startup_s))
        server.start()
        print(f"the server answered nothing for {time.monotonic() - killed:.1f} s (start-up {startup_s:.1f} s)")
        output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output
        runs = _trial_runs(client, experiment)
        assert len(runs) == 2
        for run in runs:
            assert run.info.status == "FINISHED"
            _every_epoch_once(client, run)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        server.stop()


def test_a_grid_extended_right_after_its_sweep_ended(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                     experiment: str) -> None:
    """The sweep's coordinator lingers a few seconds after its sweep ends; a grid extended at once reaches it while it
    exits, and is handed to a new one: the new point trains, the finished ones are left alone."""
    common = ["dataset=digits", "trainer.epochs=2", "model.hidden_sizes=[16]", f"tracking.uri={mlflow_uri}",
              f"tracking.experiment={experiment}", f"cluster.address={ray_address}", "cluster.num_cpus=0.5"]
    first = run_sweep_here("run", "-m", "optimizer.lr=0.01,0.05", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    client = MlflowClient(mlflow_uri)
    ended = {r.info.run_id: r.info.end_time for r in _trial_runs(client, experiment)}
    extended = run_sweep_here("run", "-m", "optimizer.lr=0.01,0.05,0.1", *common, cwd=tmp_path)
    assert extended.returncode == 0, extended.stdout + extended.stderr
    assert "3 trial(s), 1 to run, skipping 2 finished" in extended.stdout
    runs = _trial_runs(client, experiment)
    assert len(runs) == 3 and all(r.info.status == "FINISHED" and r.data.tags["attempts"] == "1" for r in runs)
    assert {r.info.run_id: r.info.end_time for r in runs if r.info.run_id in ended} == ended


def test_cancel_of_a_local_sweep_interrupts_its_command(tmp_path: Path, mlflow_uri: str, experiment: str) -> None:
    """Without a cluster the sweep lives in its `sweep` process: `sweep cancel` sends it Ctrl-C, which (locally, or
    without a terminal) cancels; the runs end KILLED and the command exits 130, saying how to resume."""
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}"]
    # Each epoch pauses a second (a test-only fault): the trials are still running when the cancel comes.
    faults = {f"optimizer.lr={lr}": {"sleep_per_epoch_s": 1.0} for lr in (0.01, 0.02)}
    sweep = _sweep("run", "-m", "optimizer.lr=0.01,0.02", "dataset=digits", "trainer.epochs=40", "sweep.name=local-stop",
                   "cluster.local_num_cpus=2", *where, cwd=tmp_path,
                   env={"RAY_ADDRESS": "", "SWEEP_FAULTS": json.dumps(faults)})
    client = MlflowClient(mlflow_uri)
    _wait_for(lambda: any(int(r.data.tags.get("epoch", 0)) >= 1 for r in _trial_runs(client, experiment)), 300,
              "a trial's first epoch")
    cancelled = run_sweep_cli("cancel", "local-stop", *where, cwd=tmp_path, env={"RAY_ADDRESS": ""})
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "its `sweep` process, pid" in cancelled.stdout
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, output
    assert "`sweep resume local-stop` picks them up" in output
    assert {r.info.status for r in _trial_runs(client, experiment)} == {"KILLED"}


def test_a_trial_waiting_for_its_owner_keeps_its_cpus(ray_address: str) -> None:
    """Ray lends the CPUs of a task whose main thread blocks in ray.get to other tasks, and starts new worker
    processes for them; a trial asks its owner between epochs, so on its main thread it would let more trials run
    than the cluster has slots, each new worker importing torch anew. A task that holds every CPU and waits for a slow
    owner must keep them: a 1-CPU task submitted meanwhile starts only after it ends."""
    import ray

    from workers.ownership import check_owned

    @ray.remote(num_cpus=0)
    class SlowOwner:
        def owns(self, trial_id: str) -> bool:
            time.sleep(3.0)
            return True

    @ray.remote(num_cpus=2)
    def trial(owner: Any) -> float:
        check_owned(owner, "t")
        return time.time()

    @ray.remote(num_cpus=1)
    def other() -> float:
        return time.time()

    owner = SlowOwner.remote()
    ray.get(owner.__ray_ready__.remote())
    trial_ref = trial.remote(owner)
    time.sleep(1.0)  # the trial is waiting on its owner
    other_started, trial_ended = ray.get(other.remote()), ray.get(trial_ref)
    assert other_started >= trial_ended, f"another task ran {trial_ended - other_started:.1f} s inside the trial's wait"


def test_warm_up_pays_ahead_what_a_first_trial_in_a_worker_would() -> None:
    """A fresh process (as a new Ray worker is) after the warm-up: the trainer and torch's compiler stack, which the
    first optimizer imports, are loaded, and the sweep's dataset is held for its trials."""
    script = """
import sys
from orchestrator.ray_launcher import _prepare_worker
from tests.trial_configs import compose_trial
from workers.training.data import _load_cached
dataset = compose_trial("dataset=digits").dataset
assert "torch._dynamo" not in sys.modules and "workers.training.trial" not in sys.modules
_prepare_worker(dataset)
assert "torch._dynamo" in sys.modules and "workers.training.trial" in sys.modules
_load_cached(dataset)
print(_load_cached.cache_info().hits)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1"], "the trial's load found the warm-up's dataset"
