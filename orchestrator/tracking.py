"""The control plane's MLflow records: one parent run per sweep, one child run per trial, found by tags."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlparse

from mlflow.entities import Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from orchestrator.errors import UserError
from orchestrator.dotted_keys import flatten
from orchestrator.identity import stable_hash
from orchestrator.mlflow_server import check_credentials, is_healthy, local_store
from workers.artifacts import PLAN_ARTIFACT, TRIAL_CONFIG
from workers.run_artifacts import RunArtifacts
from workers.run_status import set_run_status
from workers.tracking_endpoint import HTTP_SCHEMES, MASK, TrackingEndpoint, redact_uri, scrub
from workers.vocabulary import (ERROR_TAG, KIND_TAG, OVERRIDES_TAG, PARENT_KIND, SWEEP_TAG, TRIAL_KIND, TRIAL_TAG,
                                RunStatus)
from workers.trial_config import TrackingConfig, TrialConfig, as_plain

# MLflow accepts at most 100 params in one log_batch call.
PARAM_BATCH = 100


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs are recorded: a URI given by the user, or the local store (served while a sweep runs)."""

    uri: Optional[str]
    local_dir: Path
    experiment: str

    @property
    def is_local(self) -> bool:
        return self.uri is None

    @property
    def needs_local_server(self) -> bool:
        """sqlite allows one writer at a time: concurrent trials go through a server we start in front of it."""
        return self.is_local or urlparse(str(self.uri)).scheme == "sqlite"

    @property
    def has_store(self) -> bool:
        return not self.is_local or (self.local_dir / "mlflow.db").exists()

    @property
    def endpoint(self) -> TrackingEndpoint:
        """The user's URI (its credentials set apart), for reading and checking."""
        assert self.uri is not None
        return TrackingEndpoint.from_uri(self.uri)

    @property
    def store_key(self) -> str:
        """Names the store and experiment a sweep is recorded in (credentials left out): the same sweep id recorded
        elsewhere is another sweep, with its own coordinator."""
        where = self.endpoint.uri if self.uri else str(self.local_dir.resolve())
        return stable_hash([where, self.experiment], 8)

    @property
    def shown(self) -> str:
        return redact_uri(self.uri) if self.uri else f"{self.local_dir}/"

    @property
    def reader(self) -> TrackingEndpoint:
        """Where to read runs without a server (the local store's sqlite file is read directly). Reading never
        creates a store: a missing local one is a one-line error."""
        if not self.has_store:
            raise UserError(f"no sweep recorded yet: {self.local_dir}/ holds no store (run `sweep run` first, "
                            "or give tracking.uri)")
        return self.endpoint if self.uri else TrackingEndpoint(local_store(self.local_dir)[0])


def resolve_target(tracking: TrackingConfig) -> TrackingTarget:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI`` (as MLflow users expect), else the local store."""
    uri = tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    return TrackingTarget(uri, Path(tracking.local_dir), tracking.experiment)


def check_reachable(target: TrackingTarget) -> None:
    """One line, before anything is launched, when the user's store cannot be used as given."""
    if target.uri is None:
        return
    endpoint = target.endpoint
    scheme = urlparse(endpoint.uri).scheme
    if scheme in HTTP_SCHEMES:
        if not is_healthy(endpoint.uri, timeout=5.0):
            raise UserError(f"tracking.uri={endpoint.shown}: no MLflow server answers there (GET /health failed)")
        check_credentials(endpoint)
    elif scheme not in ("sqlite", "postgresql", "mysql", "mssql", "file", "databricks", "") and "+" not in scheme:
        raise UserError(f"tracking.uri={endpoint.shown}: unsupported scheme {scheme!r}; use http(s)://, sqlite:/// "
                        "or a database URI")


@dataclass(frozen=True)
class SweepRecord:
    """What the parent run remembers of a sweep, so that ``sweep resume`` can rebuild its plan."""

    arguments: tuple[str, ...]
    multirun: bool
    swept_keys: tuple[str, ...]
    # The part of the base config that decides results; a resume must not change it.
    base_identity: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"arguments": [redact_uri(a) for a in self.arguments], "multirun": self.multirun, "swept_keys": list(self.swept_keys),
                "base_identity": self.base_identity}

    @property
    def replayable_arguments(self) -> list[str]:
        """The recorded arguments a resume replays: a masked address is given again by the resuming command."""
        return [a for a in self.arguments if MASK not in a]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepRecord":
        return cls(tuple(data["arguments"]), bool(data["multirun"]), tuple(data["swept_keys"]), dict(data["base_identity"]))


def for_the_record(config: TrialConfig) -> dict[str, Any]:
    """The config as params and artifacts show it: plain values, addresses with their passwords masked."""
    recorded = as_plain(config)
    for group, key in (("tracking", "uri"), ("cluster", "address")):
        if recorded[group][key]:
            recorded[group][key] = redact_uri(str(recorded[group][key]))
    return recorded


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    # Known from creating the run: the trial's workers need not read it back.
    artifact_uri: str


class SweepTracker:
    def __init__(self, endpoint: TrackingEndpoint, experiment: str) -> None:
        self.endpoint = endpoint
        self.client = endpoint.client()
        self.experiment_name = experiment
        # An experiment's id never changes once it exists: asked for once, not once per run.
        self._experiment_id: Optional[str] = None

    def experiment_id(self, create: bool = False) -> Optional[str]:
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                self._experiment_id = experiment.experiment_id
            elif create:
                self._experiment_id = self.client.create_experiment(self.experiment_name)
        return self._experiment_id

    def _search(self, filter_string: str, order_by: Optional[list[str]] = None) -> Iterator[Run]:
        experiment_id = self.experiment_id()
        if experiment_id is None:
            return
        token = None
        while True:
            page = self.client.search_runs([experiment_id], filter_string, max_results=1000, order_by=order_by,
                                           page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def find_parent(self, sweep_id: str) -> Optional[Run]:
        runs = list(self._search(f"tags.{SWEEP_TAG} = '{sweep_id}' and tags.{KIND_TAG} = '{PARENT_KIND}'"))
        return runs[0] if runs else None

    def latest_sweep_id(self) -> Optional[str]:
        runs = self._search(f"tags.{KIND_TAG} = '{PARENT_KIND}'", order_by=["attributes.start_time DESC"])
        latest = next(iter(runs), None)
        return latest.data.tags[SWEEP_TAG] if latest else None

    def trial_runs(self, sweep_id: str, condition: str = "") -> dict[str, Run]:
        """The sweep's child runs by trial id; ``condition``: an MLflow filter they must meet too."""
        runs = self._search(f"tags.{SWEEP_TAG} = '{sweep_id}' and tags.{KIND_TAG} = '{TRIAL_KIND}'"
                            + (f" and {condition}" if condition else ""))
        return {run.data.tags[TRIAL_TAG]: run for run in runs}

    def sweep_record(self, sweep_id: str) -> Optional[SweepRecord]:
        parent = self.find_parent(sweep_id)
        if parent is None:
            return None
        with tempfile.TemporaryDirectory() as scratch:
            path = self.client.download_artifacts(parent.info.run_id, PLAN_ARTIFACT, scratch)
            return SweepRecord.from_dict(json.loads(Path(path).read_text()))

    def ensure_parent(self, sweep_id: str, record: SweepRecord) -> str:
        """The sweep's parent run (created on first launch), marked RUNNING; its plan record kept current."""
        parent = self.find_parent(sweep_id)
        if parent is None:
            run = self.client.create_run(self.experiment_id(create=True), run_name=sweep_id,
                                         tags={SWEEP_TAG: sweep_id, KIND_TAG: PARENT_KIND})
            run_id = run.info.run_id
        else:
            run_id = parent.info.run_id
            set_run_status(self.client, run_id, RunStatus.RUNNING)
        self.client.log_dict(run_id, record.to_dict(), PLAN_ARTIFACT)
        return run_id

    def create_trial_run(self, parent_run_id: str, sweep_id: str, trial_id: str, overrides: tuple[str, ...],
                         config: TrialConfig) -> str:
        return self.open_trial_run(parent_run_id, sweep_id, trial_id, overrides, config).run_id

    def open_trial_run(self, parent_run_id: str, sweep_id: str, trial_id: str, overrides: tuple[str, ...],
                       config: TrialConfig) -> TrialRun:
        """A trial's child run, SCHEDULED, with its tags, params and config artifact: four requests (one more per
        100 params beyond the first 100), none of them a read."""
        overrides = tuple(redact_uri(o) for o in overrides)
        name = " ".join(overrides) or trial_id
        tags = {SWEEP_TAG: sweep_id, TRIAL_TAG: trial_id, KIND_TAG: TRIAL_KIND, MLFLOW_PARENT_RUN_ID: parent_run_id,
                OVERRIDES_TAG: json.dumps(list(overrides)), MLFLOW_RUN_NAME: name[:250]}
        run = self.client.create_run(self.experiment_id(create=True), tags=tags, run_name=name[:250])
        run_id, artifact_uri = run.info.run_id, run.info.artifact_uri
        recorded = for_the_record(config)
        params = [Param(k, v[:6000]) for k, v in sorted(flatten(recorded).items())]
        for start in range(0, len(params), PARAM_BATCH):
            self.client.log_batch(run_id, params=params[start : start + PARAM_BATCH])
        with tempfile.TemporaryDirectory(prefix="trial-config-") as scratch:
            path = Path(scratch) / Path(TRIAL_CONFIG).name
            path.write_text(json.dumps(recorded, indent=2))
            artifact_dir = str(Path(TRIAL_CONFIG).parent) if Path(TRIAL_CONFIG).parent != Path(".") else None
            RunArtifacts(self.client, self.endpoint.uri, run_id, artifact_uri=artifact_uri).upload(path, artifact_dir)
        # Created RUNNING (MLflow's default); SCHEDULED until a worker starts it (`sweep status` shows it queued).
        set_run_status(self.client, run_id, RunStatus.SCHEDULED)
        return TrialRun(run_id, artifact_uri)

    def mark_scheduled(self, run_id: str) -> None:
        set_run_status(self.client, run_id, RunStatus.SCHEDULED)

    def fail_run(self, run_id: str, message: str, status: RunStatus = RunStatus.FAILED) -> None:
        """End a run whose task died for good (FAILED) or was cancelled (KILLED), saying why."""
        self.client.log_batch(run_id, tags=[RunTag(ERROR_TAG, scrub(message, self.endpoint.secrets)[:5000])])
        set_run_status(self.client, run_id, status)

    def end_parent(self, run_id: str, status: RunStatus) -> None:
        set_run_status(self.client, run_id, status)
