"""A spectrum job whose worker dies continues, on Ray's retry, from the progress it saved in the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from orchestrator.planning import plan_sweep
from orchestrator.ray_launcher import spectrum_task
from orchestrator.spectrum_plan import job_config, stored_trial_config
from sweep_cli import run_sweep_here
from workers.curvature import compute_spectrum
from workers.run_artifacts import RunArtifacts
from workers.spec import SpectrumJobSpec
from workers.spectrum_job import settings_from
from workers.spectrum_protocol import protocols_of
from workers.tracking_endpoint import TrackingEndpoint
from workers.training.checkpoint_store import CheckpointStore
from workers.training.data import load_dataset
from workers.training.models import build_model

pytestmark = pytest.mark.slow

SPECTRUM = ["spectrum=slq", "spectrum.steps=30", "spectrum.num_vectors=3", "spectrum.dtype=float64",
            "spectrum.progress_every=5"]


def test_killed_spectrum_worker_resumes_from_saved_progress(tmp_path: Path, ray_address: str, mlflow_uri: str,
                                                            experiment: str) -> None:
    where = [f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}", f"cluster.address={ray_address}"]
    trained = run_sweep_here("run", "dataset=digits", "trainer.epochs=2", "model.hidden_sizes=[16]", *where, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.kind = 'trial'")
    run_id = run.info.run_id
    [trial] = plan_sweep(["dataset=digits", *SPECTRUM, *where], multirun=False).trials
    job = job_config(stored_trial_config(client, run_id), trial.config)
    [protocol] = protocols_of(job)

    # Saves come at steps 5, 10, 15 of the first seed vector: the worker process exits right after the third.
    spec = SpectrumJobSpec(run_id, TrackingEndpoint(mlflow_uri), job, (2,), finishes_trial=False,
                           faults={"exit_after_saves": 3})
    outcome = ray.get(spectrum_task(job.spectrum).remote(spec))
    assert outcome.state == "FINISHED", outcome.error

    files = {Path(f.path).name for f in client.list_artifacts(run_id, f"spectrum/{protocol.id}")}
    assert files == {"epoch_2.json", "epoch_2.png"}, "the progress file goes once the result is logged"
    record = json.loads(Path(client.download_artifacts(run_id, f"spectrum/{protocol.id}/epoch_2.json",
                                                       str(tmp_path / "record"))).read_text())
    assert record["resumed_from"] == {"vectors_done": 0, "steps_done": 15}
    assert record["steps_taken"] == [30, 30, 30]

    # The same numbers as one uninterrupted computation on the same checkpoint.
    splits = load_dataset(job.dataset)
    model = build_model(job.model, splits.input_shape, splits.num_classes)
    store = CheckpointStore(RunArtifacts(client, mlflow_uri, run_id), tmp_path / "ckpt", keep=1)
    model.load_state_dict(store.load(2).model)
    straight = compute_spectrum(model, F.cross_entropy, splits.train_inputs, splits.train_targets, settings_from(job))
    for ours, theirs in zip(record["runs"], straight.runs, strict=True):
        assert torch.allclose(torch.tensor(ours["alphas"], dtype=torch.float64), theirs.alphas, rtol=1e-10, atol=1e-12)
        assert torch.allclose(torch.tensor(ours["betas"], dtype=torch.float64), theirs.betas, rtol=1e-10, atol=1e-12)
