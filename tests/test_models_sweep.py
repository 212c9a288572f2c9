"""A short CPU run of each model through a real sweep (Ray + MLflow), on CIFAR-10 files written in the real
format, plus the paper's optimizers with iterate averaging."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep_cli import run_sweep_here
from dataset_files import write_cifar

pytestmark = pytest.mark.slow

CPU_SIZED = {
    "vgg": ["model.depth=11", "model.width_factor=0.125", "model.classifier_hidden=[16]"],
    "preresnet": ["model.depth=11"],
    "wideresnet": ["model.depth=10", "model.widen_factor=1"],
}


def _trial_runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.kind = 'trial'")


@pytest.mark.parametrize("model", sorted(CPU_SIZED))
def test_each_cnn_trains_through_a_sweep(model: str, tmp_path: Path, ray_address: str, mlflow_uri: str,
                                         experiment: str) -> None:
    write_cifar(tmp_path / "data", "cifar10", per_file=40)
    result = run_sweep_here(
        "run", "-m", f"model={model}", *CPU_SIZED[model], "optimizer=sgd,swa", "schedule=paper", "dataset=cifar10",
        f"dataset.root={tmp_path / 'data'}", "trainer.epochs=2", "trainer.batch_size=32",
        f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(mlflow_uri)
    runs = {r.data.params["optimizer.name"]: r for r in _trial_runs(client, experiment)}
    assert set(runs) == {"sgd", "swa"}
    for run in runs.values():
        assert run.info.status == "FINISHED"
        assert run.data.params["model.name"] == model
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [1, 2]
    # SWA averages from T_avg = epochs // 2 = 1 on: its run also logs the average's metrics.
    assert "test_acc_avg" in runs["swa"].data.metrics and "test_acc_avg" not in runs["sgd"].data.metrics
    lrs = {name: [m.value for m in sorted(client.get_metric_history(r.info.run_id, "lr"), key=lambda m: m.step)]
           for name, r in runs.items()}
    assert lrs["sgd"][0] == pytest.approx(0.01)
