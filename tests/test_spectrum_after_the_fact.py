"""Spectra added to a finished sweep with `sweep spectrum SWEEP_ID`, on a real Ray and a stock MLflow server: no
trial trains again, a result that exists is not computed again, two protocols never share a metric."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.planning import plan_sweep
from orchestrator.spectrum_plan import missing_spectrum_epochs
from sweep_cli import run_sweep_here
from workers.config_structure import trial_config_from
from workers.spectrum_protocol import protocols_of

pytestmark = pytest.mark.slow

# Two optimizers (one averages iterates) x two learning rates: every kind of result, in four trials.
GRID = ["-m", "optimizer=sgd,gadam", "optimizer.lr=0.01,0.1", "optimizer.weight_decay=0.0001", "dataset=digits",
        "trainer.epochs=2", "model.hidden_sizes=[16]"]
SPECTRUM = ["spectrum.steps=16", "spectrum.num_vectors=2"]


def test_spectra_of_a_finished_sweep_without_retraining(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                        experiment: str) -> None:
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    trained = run_sweep_here("run", *GRID, *where, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([exp], "tags.kind = 'sweep'")
    sweep_id = parent.data.tags["sweep_id"]
    children = {c.info.run_id: c for c in client.search_runs([exp], "tags.kind = 'trial'")}
    assert len(children) == 4

    started = time.monotonic()
    first = run_sweep_here("spectrum", sweep_id, *SPECTRUM, *where, cwd=tmp_path)
    print(f"sweep spectrum over 4 trials: {time.monotonic() - started:.1f} s\n{first.stdout}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 spectrum job(s) to run" in first.stdout
    for run_id, child in children.items():
        config = trial_config_from(json.loads(Path(client.download_artifacts(run_id, "trial_config.json",
                                                                             str(tmp_path / run_id))).read_text()))
        job = replace(config, spectrum=replace(config.spectrum, steps=16, num_vectors=2, weights=None))
        expected = {p.metric_name("lambda_max", home=False): p for p in protocols_of(job)}
        after = client.get_run(run_id)
        # The defaults' protocol is the run's own (plain names); this one is another, so its names carry its id.
        assert {k for k in after.data.metrics if k.startswith("lambda_max")} == set(expected), child.data.tags["overrides"]
        assert len(expected) == (2 if "optimizer=gadam" in child.data.tags["overrides"] else 1)
        for name, protocol in expected.items():
            assert [m.step for m in client.get_metric_history(run_id, name)] == [2]
            files = {Path(f.path).name for f in client.list_artifacts(run_id, f"spectrum/{protocol.id}")}
            assert files == {"epoch_2.json", "epoch_2.png"}
        assert after.data.tags["attempts"] == "1", "trained once"

    # Everything exists: nothing is computed again, no metric gets a second point.
    again = run_sweep_here("spectrum", sweep_id, *SPECTRUM, *where, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 spectrum job(s) to run" in again.stdout and "skipped 4: has this spectrum at epoch 2 already" in again.stdout
    for run_id in children:
        for name in client.get_run(run_id).data.metrics:
            if name.startswith("lambda_max"):
                assert len(client.get_metric_history(run_id, name)) == 1

    # The averaged weights only: trials without averaging are skipped, saying why; gadam's exist already.
    average = run_sweep_here("spectrum", sweep_id, *SPECTRUM, "spectrum.weights=average", *where, cwd=tmp_path)
    assert average.returncode == 0, average.stdout + average.stderr
    assert "skipped 2: spectrum.weights=average: optimizer sgd does not average iterates" in average.stdout

    # The sweep-level picture: a table row per trial and spectrum, figures per protocol.
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, "spectrum/spectra_table.json",
                                                      str(tmp_path / "parent"))).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert len(rows) == 6 and {r["weights"] for r in rows} == {"iterate", "average"}
    assert all(r["steps_taken"] == 16 and r["test_acc"] is not None for r in rows)
    protocols = {r["protocol"] for r in rows}
    assert len(protocols) == 2
    for protocol in protocols:
        figures = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, f"spectrum/{protocol}")}
        assert {"densities.png", "heatmaps.png", "accuracy_vs_lambda_max.png", "lambda_max_across_grid.png"} <= figures

    # Adding spectrum=slq to the finished sweep's command finds the same sweep and trains nothing.
    rerun = run_sweep_here("run", *GRID, "spectrum=slq", *SPECTRUM, *where, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {c.info.run_id for c in client.search_runs([exp], "tags.kind = 'trial'")} == set(children)
    assert [p.data.tags["sweep_id"] for p in client.search_runs([exp], "tags.kind = 'sweep'")] == [sweep_id]
    assert all(client.get_run(r).data.tags["attempts"] == "1" for r in children)

    # What the coordinator asks of a finished trial's run before chaining a spectrum job to it.
    run_of = {c.data.tags["trial_id"]: run_id for run_id, c in children.items()}
    for settings, missing in ((SPECTRUM, ()), (["spectrum.steps=20", "spectrum.num_vectors=2"], (2,))):
        for trial in plan_sweep([*GRID[1:], "spectrum=slq", *settings, *where], multirun=True).trials:
            assert missing_spectrum_epochs(client, run_of[trial.trial_id], trial.config) == missing
