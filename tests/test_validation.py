"""Bad input fails before anything is launched or written: one line, the key, the value, what is allowed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep_cli import run_sweep_cli
from orchestrator.cli import main


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_INPUTS = [
    (["optimizer=sgdd"], "optimizer=sgdd: no such optimizer; allowed: adam, adamw"),
    (["trainer.epoc=3"], "trainer.epoc=3: unknown key; allowed keys here: batch_size, device, epochs"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a number > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0.0: must be a number > 0"),
    (["optimizer.lr=0.1,-1"], "optimizer.lr=-1.0: must be a number > 0"),
    (["optimizer.weight_decay=-1e-4"], "optimizer.weight_decay=-0.0001: must be a number >= 0"),
    (["optimizer.lr=fast"], "optimizer.lr=fast: Value 'fast' of type 'str' could not be converted to Float"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be an integer >= 1"),
    (["trainer.epochs=two"], "trainer.epochs=two: Value 'two' of type 'str' could not be converted to Integer"),
    (["trainer.device=tpu"], "trainer.device=tpu: must be auto, cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_override_is_one_line_and_records_nothing(overrides: list[str], message: str, mlflow_uri: str,
                                                       experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "-m", *overrides, f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: " + message), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert MlflowClient(mlflow_uri).get_experiment_by_name(experiment) is None


def test_unreachable_tracking_uri(capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{_unused_port()}"
    assert main(["run", f"tracking.uri={uri}", "dataset=digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: tracking.uri={uri}: no MLflow server answers there (GET /health failed)"


def test_unreachable_cluster_address(mlflow_uri: str, experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{_unused_port()}"
    code = main(["run", f"cluster.address={address}", f"tracking.uri={mlflow_uri}", f"tracking.experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"error: cluster.address={address}: cannot reach a Ray cluster there"), err
    assert len(err.splitlines()) == 1
    assert MlflowClient(mlflow_uri).get_experiment_by_name(experiment) is None


def test_console_script_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    result = run_sweep_cli("run", "-m", "optimizer=sgdd,adam", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: optimizer=sgdd: no such optimizer; allowed: " + result.stderr.split("allowed: ")[1].strip()]
    assert "adamw" in result.stderr
    assert not (tmp_path / ".sweeps").exists(), "nothing is written for bad input"


def test_status_of_unknown_sweep(mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "no-such-sweep", f"tracking.uri={mlflow_uri}"]) == 2
    assert "no-such-sweep" in capsys.readouterr().err


def test_status_refuses_training_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "optimizer.lr=0.1"]) == 2
    assert "optimizer.lr=0.1: only cluster.*, tracking.* overrides are allowed here" in capsys.readouterr().err


def test_reading_commands_never_create_a_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for command in (["status"], ["resume", "some-sweep"], ["spectrum", "0123456789abcdef"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: no sweep recorded yet: .sweeps/ holds no store (run `sweep run` first, or give tracking.uri)"
    assert not (tmp_path / ".sweeps").exists()
