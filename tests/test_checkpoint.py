"""Checkpoints: atomic, named by their digest, resumed bit for bit (storing them in runs: test_tracking_contract.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from orchestrator.planning import plan_sweep
from orchestrator.tracking import SweepTracker
from run_checkpoints import download_checkpoint
from workers.spec import TrialSpec
from workers.training.checkpoint import TrainingState, capture_rng, read_checkpoint, write_checkpoint
from workers.tracking_endpoint import TrackingEndpoint
from workers.training.trial import run_trial
from workers.trial_config import TrialConfig


def _state(epoch: int) -> TrainingState:
    generator = torch.Generator().manual_seed(epoch)
    return TrainingState(epoch, 10 * epoch, {"w": torch.full((3,), float(epoch))}, {"optimizer": {}}, capture_rng(generator))


def test_checkpoint_round_trip_and_weights_only(tmp_path: Path) -> None:
    path = write_checkpoint(_state(3), tmp_path)
    assert path.name == f"epoch_0003.{hashlib.sha256(path.read_bytes()).hexdigest()}.pt"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "one file, written atomically: no temp file left"
    state = read_checkpoint(path)
    assert state.epoch == 3 and state.step == 30
    assert torch.equal(state.model["w"], torch.full((3,), 3.0))
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_truncated_checkpoint_fails_its_checksum(tmp_path: Path) -> None:
    path = write_checkpoint(_state(1), tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="does not match its checksum"):
        read_checkpoint(path)


def test_a_checkpoint_of_the_sidecar_layout_is_still_read_and_verified(tmp_path: Path) -> None:
    """Runs recorded before names carried the digest: ``epoch_0002.pt`` beside ``epoch_0002.pt.sha256``."""
    written = write_checkpoint(_state(2), tmp_path / "new")
    old = tmp_path / "epoch_0002.pt"
    old.write_bytes(written.read_bytes())
    sidecar = tmp_path / "epoch_0002.pt.sha256"
    with pytest.raises(ValueError, match="has no checksum file"):
        read_checkpoint(old)
    sidecar.write_text(json.dumps({"sha256": hashlib.sha256(old.read_bytes()).hexdigest(), "epoch": 2}))
    assert read_checkpoint(old).step == 20
    old.write_bytes(old.read_bytes()[:-10])
    with pytest.raises(ValueError, match="does not match its checksum"):
        read_checkpoint(old)


def _spec(tracker: SweepTracker, config: TrialConfig, faults: dict, run_id: str | None = None) -> TrialSpec:
    if run_id is None:
        run_id = tracker.create_trial_run(tracker.client.create_run(tracker.experiment_id(create=True)).info.run_id,
                                          "bitwise", "t", ("x",), config)
    return TrialSpec("t", "bitwise", run_id, tracker.endpoint, config, faults)


def test_resumed_trial_ends_bit_for_bit_equal_to_an_uninterrupted_one(tmp_path: Path, mlflow_uri: str, experiment: str) -> None:
    config = plan_sweep(["dataset=digits", "trainer.epochs=4", "checkpoint.every=1", "model.hidden_sizes=[32]",
                         "dataset.subsample=600"], multirun=False).trials[0].config
    tracker = SweepTracker(TrackingEndpoint(mlflow_uri), experiment)

    straight = _spec(tracker, config, {})
    assert run_trial(straight).state == "FINISHED"

    interrupted = _spec(tracker, config, {"raise_at_epoch": 2})
    outcome = run_trial(interrupted)
    assert outcome.state == "FAILED" and outcome.error == "RuntimeError: injected failure at epoch 3"
    assert tracker.client.get_run(interrupted.run_id).data.tags["error"] == outcome.error
    resumed = _spec(tracker, config, {}, run_id=interrupted.run_id)
    assert run_trial(resumed).state == "FINISHED"

    finals = [torch.load(download_checkpoint(tracker.client, spec.run_id, 4, tmp_path / spec.run_id), weights_only=True)
              for spec in (straight, resumed)]
    for key, tensor in finals[0]["model"].items():
        assert torch.equal(tensor, finals[1]["model"][key]), key
    assert torch.equal(finals[0]["rng"]["batches"], finals[1]["rng"]["batches"])
    run = tracker.client.get_run(resumed.run_id)
    assert run.data.tags["resumed_from_epoch"] == "2" and run.data.tags["attempts"] == "2"
    assert "error" not in run.data.tags
    for metric in ("train_loss", "test_acc", "lr"):
        steps = [m.step for m in tracker.client.get_metric_history(resumed.run_id, metric)]
        assert sorted(steps) == [1, 2, 3, 4], (metric, steps)
    assert tracker.client.list_artifacts(resumed.run_id, "error")[0].path == "error/traceback.txt"
