"""Spectrum jobs inside a sweep and on a stored run, through the `sweep` command, on real Ray and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep_cli import run_sweep_here
from orchestrator.cli import main

pytestmark = pytest.mark.slow

SMALL_SPECTRUM = ["spectrum.steps=12", "spectrum.num_vectors=2", "spectrum.max_samples=256", "spectrum.dtype=float64"]


def test_spectra_in_a_sweep_and_of_a_stored_run(tmp_path: Path, ray_address: str, mlflow_uri: str, experiment: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    result = run_sweep_here("run", "-m", "optimizer.weight_decay=0,0.01", "dataset=digits", "trainer.epochs=3",
                           "model.hidden_sizes=[16]", "spectrum=slq", "spectrum.at_epochs=[1]", *SMALL_SPECTRUM,
                           *where, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    children = client.search_runs([exp], "tags.kind = 'trial'")
    assert len(children) == 2
    by_gamma = {}
    for child in children:
        assert child.info.status == "FINISHED"
        run_id = child.info.run_id
        for metric in ("lambda_max", "lambda_min", "trace_estimate"):
            assert sorted(m.step for m in client.get_metric_history(run_id, metric)) == [1, 3], metric
        (protocol,) = [Path(f.path).name for f in client.list_artifacts(run_id, "spectrum")]
        files = {Path(f.path).name for f in client.list_artifacts(run_id, f"spectrum/{protocol}")}
        assert files == {"epoch_1.json", "epoch_1.png", "epoch_3.json", "epoch_3.png"}
        record = json.loads(Path(client.download_artifacts(run_id, f"spectrum/{protocol}/epoch_3.json",
                                                           str(tmp_path / run_id))).read_text())
        gamma = float(child.data.params["optimizer.weight_decay"])
        assert record["epoch"] == 3 and record["l2_shift"] == gamma and record["protocol"]["id"] == protocol
        assert child.data.tags[f"spectrum.{protocol}"].startswith("hessian, BN eval, 256 samples, 12 steps x 2")
        assert max(max(run["ritz_values"]) for run in record["runs"]) == pytest.approx(child.data.metrics["lambda_max"])
        assert record["lambda_max"] == pytest.approx(child.data.metrics["lambda_max"])
        by_gamma[gamma] = child
    # Coupled L2 adds gamma * I to the Hessian of the objective: its smallest eigenvalue moves up.
    assert by_gamma[0.01].data.metrics["lambda_min"] > by_gamma[0.0].data.metrics["lambda_min"]

    # The same settings over the sweep: every result exists, nothing is computed; the parent run gets the picture.
    (parent,) = client.search_runs([exp], "tags.kind = 'sweep'")
    again = run_sweep_here("spectrum", parent.data.tags["sweep_id"], *SMALL_SPECTRUM, *where, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 spectrum job(s) to run" in again.stdout
    grid = json.loads(Path(client.download_artifacts(parent.info.run_id, f"spectrum/{protocol}/lambda_max_across_grid.json",
                                                     str(tmp_path / "parent"))).read_text())
    assert set(grid) == {"optimizer.weight_decay=0", "optimizer.weight_decay=0.01"}
    assert "densities.png" in {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, f"spectrum/{protocol}")}

    # Standalone, on the stored epoch-1 checkpoint, sharded over two Ray workers; logged into the same run.
    target = by_gamma[0.0].info.run_id
    standalone = run_sweep_here("spectrum", target, "--epoch", "1", "spectrum.num_workers=2", "spectrum.steps=8",
                               "spectrum.num_vectors=1", "spectrum.max_samples=256", "spectrum.batch_size=64", "spectrum.dtype=float64", *where,
                               cwd=tmp_path)
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr
    assert "lambda_max" in standalone.stdout
    # Other settings are another protocol: their numbers go to metrics named with its id, never into lambda_max.
    assert sorted(m.step for m in client.get_metric_history(target, "lambda_max")) == [1, 3]
    (other,) = {k for k in client.get_run(target).data.metrics if k.startswith("lambda_max.")}
    assert [m.step for m in client.get_metric_history(target, other)] == [1]
    assert client.get_run(target).info.status == "FINISHED"

    assert main(["spectrum", "0123456789abcdef0123456789abcdef", *where[:2]]) == 2
    assert "no such run or sweep" in capsys.readouterr().err
    assert main(["spectrum", parent.info.run_id, *where[:2]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run {parent.info.run_id}: has no checkpoint to compute a spectrum of"
    assert main(["spectrum", target, "--epoch", "7", *where[:2]]) == 2
    assert "--epoch 7: run " in capsys.readouterr().err
    assert main(["spectrum", target, "optimizer.lr=0.1"]) == 2
    assert "only cluster.*, spectrum.*, tracking.* overrides are allowed here" in capsys.readouterr().err
