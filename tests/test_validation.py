"""Bad input fails before anything is launched or written: one line, the key, the value, what is allowed.

Every bad input these tests try (`sweep run -m ...` exits 2 with one line; the MLflow server of ``mlflow_uri`` gets
no experiment, no run; the local store is never created):

| input | refused because |
|---|---|
| `optimizer=sgdd` | no such optimizer |
| `trainer.epoc=3` | unknown key |
| `optimizer.lr=-0.1`, `optimizer.lr=0`, `optimizer.lr=0.1,-1` (one bad grid point) | lr must be > 0 |
| `optimizer.weight_decay=-1e-4` | must be >= 0 |
| `optimizer.lr=fast`, `trainer.epochs=two` | not a number (Hydra's own message) |
| `trainer.epochs=0` | must be >= 1 |
| `trainer.device=tpu` | not auto, cpu, cuda, cuda:N or mps |
| `model=vgg` (default `dataset=mnist5k`), `model=wideresnet dataset=digits` | image model, flat data |
| `trainer.seed=-1`, `trainer.seed=4294967296`, `dataset.split_seed=-3`, `spectrum.seed=4294967296` | numpy seeds |
| `spectrum=slq trainer.device=mps` | the spectrum job computes on auto, cpu or cuda only |
| `spectrum=slq spectrum.num_workers=2 trainer.device=cuda:1` (no GPUs per worker) | sharded spectrum: device |
| `spectrum=slq spectrum.num_workers=2 spectrum.gpus_per_worker=1 trainer.device=cpu` | and GPUs contradict |
| `spectrum.basis_device=cuda` | null or cpu |
| `cluster.retry_exceptions=[ConectionError]`, `[os.path]`, `[no_such_module.Error]`, `[print]` | no exception class |
| `spectrum=slq spectrum.num_workers=2 spectrum.max_samples=100` (one batch of 1024) | fewer batches than shards |
| `dataset=digits spectrum=slq spectrum.num_workers=3 spectrum.batch_size=800` (1,438 examples: 2 batches) | same |
| `dataset=digits spectrum=slq spectrum.bn_mode=train spectrum.num_workers=13` (batches of trainer.batch_size=128: 12) | same |
| `sweep.name="it's"`, `sweep.name=" padded"` | MLflow's run search cannot hold the name |
| `optimizer.lr=0.01,0.1 sweep.pruner=median` (a grid) | a pruner stops a search's trials (test_optuna.py: its settings) |
| `tracking.local_dir=<a file>/store`, `tracking.local_dir=/proc/...` (no tracking URI) | cannot create the store |
| `tracking.uri=http://127.0.0.1:<unused port>` | no MLflow server answers |
| `cluster.address=127.0.0.1:<unused port>` | no Ray cluster answers |
| `sweep status no-such-sweep`; `sweep status optimizer.lr=0.1` | no such sweep; not a where-to-run override |
| `status`, `resume`, `spectrum` with no store yet | nothing recorded yet; no store created |
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep_cli import run_sweep_cli
from orchestrator.cli import main
from workers.config_rules import SEED_MAX


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
    (["trainer.device=tpu"], "trainer.device=tpu: must be auto, cpu, cuda, cuda:N or mps"),
    (["model=vgg"], "model=vgg: needs image inputs (channels, height, width), but dataset=mnist5k gives flat "
                      "vectors of 784 values; allowed: an image dataset (mnist, cifar10, cifar100), or model=mlp"),
    (["model=wideresnet", "dataset=digits"], "model=wideresnet: needs image inputs"),
    (["trainer.seed=-1"], f"trainer.seed=-1: must be an integer in [0, {SEED_MAX}] (what numpy accepts as a seed)"),
    (["trainer.seed=4294967296"], f"trainer.seed=4294967296: must be an integer in [0, {SEED_MAX}]"),
    (["dataset.split_seed=-3"], f"dataset.split_seed=-3: must be an integer in [0, {SEED_MAX}]"),
    (["spectrum=slq", "spectrum.seed=4294967296"], f"spectrum.seed=4294967296: must be an integer in [0, {SEED_MAX}]"),
    (["spectrum=slq", "trainer.device=mps"],
     "trainer.device=mps: the spectrum job (spectrum.enabled) computes on auto, cpu or cuda; allowed with spectra: "
     "auto, cpu, cuda or cuda:N"),
    (["spectrum=slq", "spectrum.num_workers=2", "trainer.device=cuda:1"],
     "trainer.device=cuda:1: a sharded spectrum (spectrum.num_workers=2) computes on GPUs exactly when "
     "spectrum.gpus_per_worker > 0, and it is 0.0; allowed: trainer.device=auto, or spectrum.gpus_per_worker > 0"),
    (["spectrum=slq", "spectrum.num_workers=2", "spectrum.gpus_per_worker=1", "trainer.device=cpu"],
     "trainer.device=cpu: a sharded spectrum (spectrum.num_workers=2) computes on GPUs exactly when "
     "spectrum.gpus_per_worker > 0, and it is 1.0; allowed: trainer.device=auto, or spectrum.gpus_per_worker 0"),
    (["spectrum.basis_device=cuda"], "spectrum.basis_device=cuda: must be null or cpu"),
    (["cluster.retry_exceptions=[ConectionError]"],
     "cluster.retry_exceptions=[ConectionError]: ConectionError names no exception class; allowed: builtin exception "
     "names (ConnectionError, TimeoutError, ...) or importable dotted names (module.ErrorClass)"),
    (["cluster.retry_exceptions=[ConnectionError,os.path]"],
     "cluster.retry_exceptions=[ConnectionError,os.path]: os.path names no exception class"),
    (["cluster.retry_exceptions=[no_such_module.Error]"],
     "cluster.retry_exceptions=[no_such_module.Error]: no_such_module.Error names no exception class"),
    (["cluster.retry_exceptions=[print]"], "cluster.retry_exceptions=[print]: print names no exception class"),
    (["spectrum=slq", "spectrum.num_workers=2", "spectrum.max_samples=100"],
     "spectrum.num_workers=2: the spectrum's 100 training examples (dataset=mnist5k, spectrum.max_samples=100) make "
     "only 1 batch(es) of spectrum.batch_size=1024, and each worker needs at least one; allowed: at most 1, or a "
     "smaller spectrum.batch_size"),
    (["dataset=digits", "spectrum=slq", "spectrum.num_workers=3", "spectrum.batch_size=800"],
     "spectrum.num_workers=3: the spectrum's 1438 training examples (dataset=digits, spectrum.max_samples=null) make "
     "only 2 batch(es) of spectrum.batch_size=800"),
    # In BatchNorm train mode an unset spectrum.batch_size is the trial's own trainer.batch_size (128).
    (["dataset=digits", "spectrum=slq", "spectrum.bn_mode=train", "spectrum.num_workers=13"],
     "spectrum.num_workers=13: the spectrum's 1438 training examples (dataset=digits, spectrum.max_samples=null) make "
     "only 12 batch(es) of spectrum.batch_size=128"),
    (['sweep.name="it\'s"'], "sweep.name=it's: must be at most 250 printable characters without ' (MLflow's run "
                             "search quotes the name) and without leading or trailing spaces"),
    (['sweep.name=" padded"'], "sweep.name= padded: must be at most 250 printable characters without '"),
    (["optimizer.lr=0.01,0.1", "sweep.pruner=median"],
     "sweep.pruner=median: a pruner stops the trials of a search (-m hydra/sweeper=optuna ...); a grid runs every "
     "point to its last epoch; allowed here: null"),
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


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_local_store_directory_that_cannot_be_created(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """No tracking URI: the store would live in tracking.local_dir. (Tests run as root, whom no permission bit
    stops: a path under a regular file, and a virtual file system, are what root cannot write either.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "a-file").write_text("")
    local_dir, problem = {
        "under_a_file": (tmp_path / "a-file" / "store", f"{tmp_path / 'a-file'} is not a directory"),
        "proc": (Path("/proc/curvature-sweeps-store"), "cannot write in /proc ("),
    }[where]
    assert main(["run", f"tracking.local_dir={local_dir}", "dataset=digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: tracking.local_dir={local_dir}: {problem}"), err
    assert err.endswith("allowed: a directory this user can create and write") and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "nothing is written for bad input"
    assert not local_dir.exists()


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
