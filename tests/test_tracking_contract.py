"""One contract for the tracking behaviour the project relies on, run against every store a lab uses.

Stores (each started as its own docs start it):
- ``embedded``: the default local store (SQLite under ``.sweeps/``) behind the server ``sweep run`` starts; status
  and resume read the SQLite file directly, as they do when no server runs;
- ``stock-sqlite``: ``mlflow server --backend-store-uri sqlite:///... --host 127.0.0.1 --port P`` (proxied
  artifacts: runs get ``mlflow-artifacts:/`` URIs);
- ``stock-postgres``: the same on a real PostgreSQL 16;
- ``auth-env`` / ``auth-uri``: MLflow's basic-auth app, credentials from MLFLOW_TRACKING_USERNAME/PASSWORD, or
  inside the URI.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import torch

from orchestrator.mlflow_server import LocalMlflowServer, local_store
from orchestrator.status import trial_status
from orchestrator.status_summary import CLOCK_MARGIN_S, KeptSummary, read_statuses, write_summary
from orchestrator.tracking import SweepRecord, SweepTracker
from tracking_servers import ADMIN_USER, AUTH_PASSWORD, StockServer
from trial_configs import changed, compose_trial
from workers.config_structure import trial_config_from
from workers.artifacts import CHECKPOINT_DIR, SPECTRUM_DIR, TRIAL_CONFIG, checkpoint_epochs
from workers.run_logger import RunLogger
from workers.run_status import set_run_status
from workers.tracking_endpoint import PASSWORD_ENV, USERNAME_ENV, TrackingEndpoint
from workers.training.checkpoint import TrainingState, capture_rng, sha256_of, write_checkpoint
from workers.training.checkpoint_store import CheckpointStore
from workers.trial_config import TrialConfig
from workers.vocabulary import RunStatus

STORES = ("embedded", "stock-sqlite", "stock-postgres", "auth-env", "auth-uri")


@dataclass(frozen=True)
class Store:
    # Where trials write (a server), and where `sweep status` / `sweep resume` read.
    writer: TrackingEndpoint
    reader: TrackingEndpoint
    artifact_scheme: str


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("embedded") / ".sweeps"
    server = LocalMlflowServer(directory)
    yield server.start(), directory
    server.stop()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    kind = request.param
    if kind == "embedded":
        uri, directory = request.getfixturevalue("embedded")
        return Store(TrackingEndpoint(uri), TrackingEndpoint(local_store(directory)[0]), "file")
    if kind.startswith("auth"):
        server: StockServer = request.getfixturevalue("auth_server")
        monkeypatch.delenv(USERNAME_ENV, raising=False)
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
        if kind == "auth-env":
            monkeypatch.setenv(USERNAME_ENV, ADMIN_USER)
            monkeypatch.setenv(PASSWORD_ENV, AUTH_PASSWORD)
            endpoint = TrackingEndpoint.from_uri(server.uri)
        else:
            endpoint = TrackingEndpoint.from_uri(server.uri.replace("http://", f"http://{ADMIN_USER}:{AUTH_PASSWORD}@"))
        return Store(endpoint, endpoint, "mlflow-artifacts")
    server = request.getfixturevalue("stock_server" if kind == "stock-sqlite" else "postgres_server")
    return Store(TrackingEndpoint(server.uri), TrackingEndpoint(server.uri), "mlflow-artifacts")


def _state(epoch: int) -> TrainingState:
    generator = torch.Generator().manual_seed(epoch)
    return TrainingState(epoch, 10 * epoch, {"w": torch.full((3,), float(epoch))}, {"optimizer": {}}, capture_rng(generator))


def _config(store: Store, lr: float) -> TrialConfig:
    config = compose_trial(f"optimizer.lr={lr}", "trainer.epochs=3")
    return changed(config, "tracking.uri", store.writer.shown)


def _trial(store: Store, experiment: str, sweep: str = "contract") -> tuple[SweepTracker, str, str]:
    tracker = SweepTracker(store.writer, experiment)
    record = SweepRecord(("-m", "optimizer.lr=0.1,0.2"), True, ("optimizer.lr",), {"trainer": {"epochs": 3}})
    parent = tracker.ensure_parent(sweep, record)
    run_id = tracker.create_trial_run(parent, sweep, "t-01", ("optimizer.lr=0.1",), _config(store, 0.1))
    return tracker, parent, run_id


def test_parent_and_trial_runs_are_found_by_their_tags(store: Store, experiment: str, tmp_path: Path) -> None:
    tracker, parent, run_id = _trial(store, experiment)
    second = tracker.create_trial_run(parent, "contract", "t-02", ("optimizer.lr=0.2",), _config(store, 0.2))
    assert tracker.ensure_parent("contract", SweepRecord((), True, (), {})) == parent, "found again, not duplicated"

    reader = SweepTracker(store.reader, experiment)
    assert reader.find_parent("contract").info.run_id == parent
    assert reader.latest_sweep_id() == "contract"
    runs = reader.trial_runs("contract")
    assert {tid: r.info.run_id for tid, r in runs.items()} == {"t-01": run_id, "t-02": second}
    run = runs["t-01"]
    assert run.info.artifact_uri.startswith(store.artifact_scheme + ":"), run.info.artifact_uri
    assert run.info.status == "SCHEDULED"
    assert run.data.params["optimizer.lr"] == "0.1"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert json.loads(run.data.tags["overrides"]) == ["optimizer.lr=0.1"]
    stored = json.loads(Path(reader.client.download_artifacts(run_id, TRIAL_CONFIG, str(tmp_path))).read_text())
    assert stored["optimizer"]["lr"] == 0.1
    assert trial_config_from(stored) == _config(store, 0.1), "the stored config reads back as the value it was"
    assert reader.sweep_record("contract") == SweepRecord((), True, (), {}), "the plan record is kept current"


def test_epochs_are_logged_once_and_read_back_by_status(store: Store, experiment: str) -> None:
    _, _, run_id = _trial(store, experiment)
    logger = RunLogger(store.writer, run_id)
    logger.mark_running()
    for epoch in (1, 2):
        logger.log_epoch(epoch, {"train_loss": 1.0 / epoch, "test_acc": 0.5 + epoch / 10})
    assert logger.last_logged_epoch() == 2

    reader = SweepTracker(store.reader, experiment)
    status = trial_status(reader.trial_runs("contract")["t-01"])
    assert (status.state, status.epoch, status.attempts, status.test_acc) == ("running", 2, 1, pytest.approx(0.7))
    assert status.node, "the node the attempt runs on is recorded"
    history = reader.client.get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]

    logger.mark_running()  # a retry: a second attempt in the same run
    logger.finish()
    status = trial_status(reader.trial_runs("contract")["t-01"])
    assert (status.state, status.attempts) == ("finished", 2)


def test_checkpoints_upload_list_download_and_prune(store: Store, experiment: str, tmp_path: Path) -> None:
    """The first-wave failure: pruning against a stock server raised for every trial (mlflow-artifacts URIs)."""
    _, _, run_id = _trial(store, experiment)
    logger = RunLogger(store.writer, run_id)
    stored: list[int] = []
    with CheckpointStore(logger.artifacts(), tmp_path / "a", keep=2, protected=(1,), on_stored=stored.append) as checkpoints:
        for epoch in (1, 2, 3, 4):
            checkpoints.save(_state(epoch))
    assert stored == [1, 2, 3, 4], "each checkpoint reported once stored, in order"
    assert not list((tmp_path / "a" / "out").iterdir()), "a stored checkpoint leaves no local copy behind"
    assert checkpoints.epochs() == [1, 3, 4], "the newest `keep`, and the protected epoch 1"
    names = {Path(f.path).name for f in logger.client.list_artifacts(run_id, CHECKPOINT_DIR)}
    assert sorted(checkpoint_epochs(names)) == [1, 3, 4] and len(names) == 3, "one file per checkpoint"
    assert torch.equal(checkpoints.load(3).model["w"], torch.full((3,), 3.0))

    # A truncated newest checkpoint (a crash mid-upload) is skipped for the previous one, on any store.
    newest = checkpoints.load(4)
    assert newest.epoch == 4
    full = next((tmp_path / "a" / "in" / CHECKPOINT_DIR).glob("epoch_0004.*.pt"))
    broken = tmp_path / "broken" / full.name
    broken.parent.mkdir()
    broken.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    logger.artifacts().delete(f"{CHECKPOINT_DIR}/{full.name}")
    logger.artifacts().upload(broken, CHECKPOINT_DIR)
    with CheckpointStore(logger.artifacts(), tmp_path / "b", keep=2) as resumed:
        with pytest.warns(UserWarning, match="epoch_0004.* unusable .*falling back"):
            state = resumed.latest()
        assert state is not None and state.epoch == 3
        # Epoch 4 trained again (its bytes differ: GPU kernels need not be deterministic) replaces the unusable
        # file: no orphan of the same epoch stays in the run.
        resumed.save(dataclasses.replace(_state(4), step=41))
    names = {Path(f.path).name for f in logger.client.list_artifacts(run_id, CHECKPOINT_DIR)}
    # (This store protects no epoch: epoch 1 went with the newest two kept.)
    assert broken.name not in names and sorted(checkpoint_epochs(names)) == [3, 4] and len(names) == 2, names
    latest = CheckpointStore(logger.artifacts(), tmp_path / "c", keep=2).latest()
    assert latest is not None and (latest.epoch, latest.step) == (4, 41)


def test_checkpoints_of_the_sidecar_layout_resume_and_are_pruned(store: Store, experiment: str, tmp_path: Path) -> None:
    """A run recorded before checkpoint names carried their digest (``epoch_0001.pt`` + ``.sha256``) resumes on
    any store, and its old files go, sidecar and all, when newer checkpoints replace them."""
    _, _, run_id = _trial(store, experiment)
    logger = RunLogger(store.writer, run_id)
    old = tmp_path / "old" / "epoch_0001.pt"
    old.parent.mkdir()
    old.write_bytes(write_checkpoint(_state(1), tmp_path / "written").read_bytes())
    old.with_name("epoch_0001.pt.sha256").write_text(json.dumps({"sha256": sha256_of(old), "epoch": 1}))
    for path in (old.with_name("epoch_0001.pt.sha256"), old):
        logger.artifacts().upload(path, CHECKPOINT_DIR)
    with CheckpointStore(logger.artifacts(), tmp_path / "a", keep=1) as checkpoints:
        latest = checkpoints.latest()
        assert latest is not None and latest.epoch == 1 and latest.step == 10
        checkpoints.save(_state(2))
    names = [Path(f.path).name for f in logger.client.list_artifacts(run_id, CHECKPOINT_DIR)]
    assert len(names) == 1 and checkpoint_epochs(names) == [2], names


def test_spectrum_artifacts_and_a_failure_are_recorded(store: Store, experiment: str, tmp_path: Path) -> None:
    _, _, run_id = _trial(store, experiment)
    logger = RunLogger(store.writer, run_id)
    logger.mark_running()
    ritz = tmp_path / "epoch_3.json"
    ritz.write_text(json.dumps({"ritz_values": [1.0, 2.0]}))
    png = tmp_path / "epoch_3.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    logger.log_artifact(ritz, SPECTRUM_DIR)
    logger.log_artifact(png, SPECTRUM_DIR)
    logger.log_metrics(3, {"lambda_max": 12.5})
    logger.fail("RuntimeError: boom", "Traceback (most recent call last):\nRuntimeError: boom\n")

    reader = SweepTracker(store.reader, experiment)
    assert logger.artifacts().names(SPECTRUM_DIR) == ["epoch_3.json", "epoch_3.png"]
    stored = Path(reader.client.download_artifacts(run_id, f"{SPECTRUM_DIR}/epoch_3.json", str(tmp_path / "dl")))
    assert json.loads(stored.read_text())["ritz_values"] == [1.0, 2.0]
    run = reader.trial_runs("contract")["t-01"]
    assert run.data.metrics["lambda_max"] == 12.5
    status = trial_status(run)
    assert (status.state, status.error) == ("failed", "RuntimeError: boom")
    assert "RuntimeError: boom" in Path(reader.client.download_artifacts(run_id, "error/traceback.txt",
                                                                          str(tmp_path / "tb"))).read_text()


def test_a_failed_run_is_recorded_by_the_orchestrator(store: Store, experiment: str) -> None:
    tracker, parent, run_id = _trial(store, experiment)
    tracker.fail_run(run_id, "WorkerCrashedError: the worker died")
    tracker.end_parent(parent, "FAILED")
    reader = SweepTracker(store.reader, experiment)
    assert reader.trial_runs("contract")["t-01"].data.tags["error"] == "WorkerCrashedError: the worker died"
    assert reader.find_parent("contract").info.status == "FAILED"
    assert urlsplit(store.writer.uri).password is None, "no password in the URI MLflow is handed"


def test_status_reads_its_summary_and_only_the_runs_changed_since(store: Store, experiment: str) -> None:
    """`sweep status` of a large sweep reads the finished trials' rows from one artifact, and the runs that are not
    finished or ended since it was written; its rows are those a read of every run gives."""
    writer = SweepTracker(store.writer, experiment)
    parent = writer.ensure_parent("summarised", SweepRecord((), True, (), {}))

    def trial(trial_id: str) -> str:
        return writer.create_trial_run(parent, "summarised", trial_id, (f"trial={trial_id}",), _config(store, 0.1))

    finished, failed, queued = trial("finished"), trial("failed"), trial("queued")
    writer.client.log_metric(finished, "test_acc", 0.5, step=1)
    # Ended well before the summary (runs that end within the clock margin of it are read again anyway).
    set_run_status(writer.client, finished, RunStatus.FINISHED, end_time=int((time.time() - 2 * CLOCK_MARGIN_S) * 1000))
    set_run_status(writer.client, failed, RunStatus.FAILED)
    reader = SweepTracker(store.reader, experiment)
    whole = read_statuses(reader, "summarised")
    assert not whole.from_summary
    assert {t: s.state for t, s in whole.statuses.items()} == {"finished": "finished", "failed": "failed",
                                                               "queued": "pending"}
    assert write_summary(reader, whole)

    # Since the summary: the failed trial is resumed and finishes, the queued one runs, a new trial is created, and
    # the finished run gains a metric its row does not show (proof that its run is not read again).
    set_run_status(writer.client, failed, RunStatus.RUNNING)
    writer.client.log_metric(failed, "test_acc", 0.7, step=1)
    set_run_status(writer.client, failed, RunStatus.FINISHED)
    set_run_status(writer.client, queued, RunStatus.RUNNING)
    trial("new")
    writer.client.log_metric(finished, "test_acc", 0.9, step=2)
    summarised = read_statuses(reader, "summarised")
    assert summarised.from_summary and whole.worth_keeping and not summarised.worth_keeping
    every_run = {t: trial_status(r) for t, r in reader.trial_runs("summarised").items()}
    assert summarised.statuses.keys() == every_run.keys() == {"finished", "failed", "queued", "new"}
    for trial_id in ("failed", "queued", "new"):
        assert summarised.statuses[trial_id] == every_run[trial_id], trial_id
    assert summarised.statuses["failed"].test_acc == 0.7 and summarised.statuses["queued"].state == "running"
    assert summarised.statuses["finished"].test_acc == 0.5 != every_run["finished"].test_acc
    # A reader's own previous read stands in for the summary (the coordinator keeps it so).
    continued = read_statuses(reader, "summarised", previous=whole)
    assert continued.from_summary and continued.statuses == summarised.statuses


def test_a_kept_summary_reads_again_only_what_changed(store: Store, experiment: str) -> None:
    """The coordinator's summary: each refresh keeps every row current, and a run finished before the last
    refresh (less the clock margin) is not read again."""
    writer = SweepTracker(store.writer, experiment)
    parent = writer.ensure_parent("kept", SweepRecord((), True, (), {}))
    early, late = (writer.create_trial_run(parent, "kept", t, (f"trial={t}",), _config(store, 0.1))
                   for t in ("early", "late"))
    writer.client.log_metric(early, "test_acc", 0.5, step=1)
    set_run_status(writer.client, early, RunStatus.FINISHED, end_time=int((time.time() - 2 * CLOCK_MARGIN_S) * 1000))
    set_run_status(writer.client, late, RunStatus.RUNNING)
    kept = KeptSummary(writer, "kept")
    kept.refresh()
    writer.client.log_metric(early, "test_acc", 0.9, step=2)
    writer.client.log_metric(late, "test_acc", 0.7, step=1)
    set_run_status(writer.client, late, RunStatus.FINISHED)
    kept.refresh()
    read = read_statuses(SweepTracker(store.reader, experiment), "kept")
    assert read.from_summary and read.finished_read == 1
    assert {t: (s.state, s.test_acc) for t, s in read.statuses.items()} == {
        "early": ("finished", 0.5), "late": ("finished", 0.7)}
