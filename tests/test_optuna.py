"""Searches (issue 13): hydra-optuna-sweeper's batches run as the sweep's trials through its coordinator, on a real Ray
and a stock MLflow server; the study continues when the same command runs again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from sweep_cli import run_sweep_here

LR, WD = (0.001, 0.1), (1e-5, 1e-3)


def _runs(client: MlflowClient, experiment: str, kind: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.kind = '{kind}'", max_results=1000)


def _search(n_trials: int, mlflow_uri: str, experiment: str, ray_address: str) -> list[str]:
    return ["run", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=tpe", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=0", f"optimizer.lr=interval({LR[0]},{LR[1]})",
            f"optimizer.weight_decay=interval({WD[0]},{WD[1]})", "dataset=digits", "trainer.epochs=2",
            f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]


@pytest.mark.slow
def test_tpe_search_of_eight_then_continued(tmp_path: Path, ray_address: str, mlflow_uri: str, experiment: str) -> None:
    result = run_sweep_here(*_search(8, mlflow_uri, experiment, ray_address), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "optuna search, 8 trial(s), 8 to run" in result.stdout

    client = MlflowClient(mlflow_uri)
    (parent,) = _runs(client, experiment, "sweep")
    children = _runs(client, experiment, "trial")
    assert len(children) == 8
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    sampled = {(float(c.data.params["optimizer.lr"]), float(c.data.params["optimizer.weight_decay"])) for c in children}
    assert len(sampled) == 8
    assert all(LR[0] <= lr <= LR[1] and WD[0] <= wd <= WD[1] for lr, wd in sampled)
    # The sampler's choice is what each run's overrides name.
    assert all("optimizer.lr=" in c.data.tags["overrides"] and "optimizer.weight_decay=" in c.data.tags["overrides"]
               for c in children)

    best = max(children, key=lambda c: c.data.metrics["test_acc"])
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["best_trial"] == best.data.tags["trial_id"]
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_test_acc"] == pytest.approx(best.data.metrics["test_acc"])
    assert (tmp_path / ".sweeps" / "studies" / f"{parent.data.tags['sweep_id']}.db").exists()

    # The same command again: the study has its 8 trials, nothing is asked, run or touched.
    end_times = {c.info.run_id: c.info.end_time for c in children}
    again = run_sweep_here(*_search(8, mlflow_uri, experiment, ray_address), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "8 trial(s), 0 to run, 8 done" in again.stdout
    assert {c.info.run_id: c.info.end_time for c in _runs(client, experiment, "trial")} == end_times

    # Raised to 10: only the difference runs, in the same sweep.
    more = run_sweep_here(*_search(10, mlflow_uri, experiment, ray_address), cwd=tmp_path)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "10 trial(s), 2 to run, 8 done" in more.stdout
    after = _runs(client, experiment, "trial")
    assert len(after) == 10
    assert {c.info.run_id: c.info.end_time for c in after if c.info.run_id in end_times} == end_times
    assert len(_runs(client, experiment, "sweep")) == 1


def test_without_the_extra_one_line_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    # None in sys.modules makes the import fail, as it does where the extra is not installed.
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_optuna_sweeper", None)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "-m", "hydra/sweeper=optuna", "optimizer.lr=interval(0.001,0.1)", "dataset=digits"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert 'pip install "curvature-sweeps[optuna]"' in err
    assert not (tmp_path / ".sweeps").exists()


@pytest.mark.parametrize("overrides, message", [
    (["sweep.objective_mode=best"], "sweep.objective_mode=best: must be max or min"),
    (["sweep.objective=accuracy"], "sweep.objective=accuracy: must be one of test_acc"),
    (["sweep.pruner=mean"], "sweep.pruner=mean: must be null or median"),
    (["sweep.pruner=median", "sweep.pruner_startup_trials=-1"],
     "sweep.pruner_startup_trials=-1: must be an integer >= 0"),
    (["sweep.pruner=median", "sweep.pruner_warmup_epochs=-1"],
     "sweep.pruner_warmup_epochs=-1: must be an integer >= 0"),
    (["sweep.pruner=median", "sweep.pruner_warmup_epochs=3", "trainer.epochs=5"],
     "sweep.pruner_warmup_epochs=3: with trainer.epochs=5 the pruner could never stop a trial"),
    (["sweep.pruner=median", "trainer.epochs=2"], "trainer.epochs=2: sweep.pruner=median could never stop a trial"),
])
def test_objective_and_pruner_are_checked_before_launch(overrides: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["run", "-m", "hydra/sweeper=optuna", "optimizer.lr=interval(0.001,0.1)", "dataset=digits",
                 *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert message in err
    assert not (tmp_path / ".sweeps").exists()


@pytest.mark.parametrize("where", ["command line", "preset"])
def test_a_pruner_on_a_grid_is_refused_before_launch(where: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The sweep node of the config, set as an override of the whole node (as a preset would set it).
    pruner = ["sweep.pruner=median"] if where == "command line" else ["sweep={pruner:median}"]
    code = main(["run", "-m", "optimizer.lr=0.01,0.1", "dataset=digits", *pruner])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("error: sweep.pruner=median: a pruner stops the trials of a search (-m hydra/sweeper=optuna "
                           "...); a grid runs every point to its last epoch; allowed here: null"), err
    assert not (tmp_path / ".sweeps").exists()


@pytest.mark.slow
def test_a_config_proposed_again_reuses_its_run(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                experiment: str) -> None:
    # Two possible configs, four trials: the sampler proposes some config again, which runs once.
    args = ["run", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.seed=1", "optimizer.lr=choice(0.01,0.1)", "dataset=digits", "trainer.epochs=1",
            f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    result = run_sweep_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(mlflow_uri)
    children = _runs(client, experiment, "trial")
    assert 1 <= len(children) <= 2
    assert len({c.data.tags["trial_id"] for c in children}) == len(children)
    again = run_sweep_here(*args, cwd=tmp_path)
    assert "4 trial(s), 0 to run, 4 done" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
def test_median_pruner_stops_a_clearly_worse_trial(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                   experiment: str) -> None:
    # TPE's seeded startup proposes lr 0.1, then 0.0001 (and 0.0001 again when the search continues with seed 12):
    # the second trial learns next to nothing in its first epoch, far below the first trial's, and is pruned. Its
    # epochs pause (a test-only fault) so that the prune order always reaches it before its last epoch.
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]

    def search(n_trials: int) -> list[str]:
        return ["run", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=tpe", f"hydra.sweeper.n_trials={n_trials}",
                "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=10", "optimizer.lr=choice(0.1,0.0001)",
                "dataset=digits", "trainer.epochs=4", "sweep.pruner=median", "sweep.pruner_startup_trials=1", *where]

    faults = {"SWEEP_FAULTS": json.dumps({"optimizer.lr=0.0001": {"sleep_per_epoch_s": 1.5}})}
    result = run_sweep_here(*search(2), cwd=tmp_path, env=faults)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 2 trial(s) pruned" in result.stdout
    client = MlflowClient(mlflow_uri)
    runs = {float(c.data.params["optimizer.lr"]): c for c in _runs(client, experiment, "trial")}
    assert set(runs) == {0.1, 0.0001}
    good, pruned = runs[0.1], runs[0.0001]
    assert good.info.status == "FINISHED"
    assert pruned.info.status == "KILLED" and "error" not in pruned.data.tags
    logged = [m.step for m in client.get_metric_history(pruned.info.run_id, "test_acc")]
    assert sorted(logged) == list(range(1, int(pruned.data.tags["pruned"]) + 1)) and len(logged) < 4
    (parent,) = _runs(client, experiment, "sweep")
    assert parent.info.status == "FINISHED" and parent.data.tags["best_run_id"] == good.info.run_id

    # The study holds the epochs the pruned trial reported; it is marked pruned, with its last value.
    import optuna

    from orchestrator.study import open_storage

    sweep_id = parent.data.tags["sweep_id"]
    study = optuna.load_study(study_name=sweep_id,
                              storage=open_storage(str(tmp_path / ".sweeps" / "studies" / f"{sweep_id}.db")))
    first, second = study.trials
    assert sorted(first.intermediate_values) == [1, 2, 3, 4] and "pruned" not in first.user_attrs
    assert second.user_attrs["pruned"] == len(logged) and sorted(second.intermediate_values) == sorted(logged)
    assert second.value == pytest.approx(pruned.data.metrics["test_acc"])

    status = run_sweep_here("status", *where, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    (row,) = [line for line in status.stdout.splitlines() if pruned.data.tags["trial_id"] in line]
    assert "pruned" in row

    # Continued: the sampler proposes the pruned config again; it is neither run again nor counted as failed.
    more = run_sweep_here(*search(3), cwd=tmp_path, env=faults)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "3 trial(s), 1 to run, 2 done" in more.stdout
    after = {c.info.run_id: (c.info.status, c.info.end_time) for c in _runs(client, experiment, "trial")}
    assert after == {c.info.run_id: (c.info.status, c.info.end_time) for c in (good, pruned)}
