"""The subcommands' work: what ``sweep run``, ``sweep status`` and ``sweep ui`` do, in the order they do it."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

from rich.console import Console

from orchestrator.composition import composer, to_container
from orchestrator.errors import UserError
from orchestrator.mlflow_server import LocalMlflowServer
from orchestrator.grid_plot import log_metric_across_grid
from orchestrator.identity import UNSET, changed_keys, identity_config
from orchestrator.planning import SweepPlan, plan_sweep
from orchestrator.ray_cluster import check_reachable as check_ray_reachable, connect, resolve_address
from orchestrator.status import FINISHED, render, trial_status
from orchestrator.validation import validate
from orchestrator.tracking import SweepRecord, SweepTracker, TrackingTarget, check_reachable, resolve_target
from orchestrator.topology import refuse_remote_nodes_with_local_store
from workers.tracking_endpoint import TrackingEndpoint

WHERE_TO_RUN_PREFIXES = ("tracking.", "cluster.", "tracking=", "cluster=")
SPECTRUM_PREFIXES = (*WHERE_TO_RUN_PREFIXES, "spectrum.")


@contextmanager
def writable_store(target: TrackingTarget, while_starting: Callable[[], None] = lambda: None) -> Iterator[TrackingEndpoint]:
    """Where many writers can log at once: the user's store, or a local server in front of a sqlite store (the
    local one, or the user's ``sqlite:///``).

    ``while_starting`` runs while the local server boots (several seconds), e.g. to start Ray meanwhile.
    """
    if not target.needs_local_server:
        while_starting()
        yield target.endpoint
        return
    server = LocalMlflowServer(target.local_dir) if target.is_local else LocalMlflowServer.for_sqlite(str(target.uri))
    server.spawn()
    try:
        while_starting()
        yield TrackingEndpoint(server.wait_until_healthy())
    finally:
        server.stop()


def run_sweep(arguments: Sequence[str], multirun: bool, console: Console) -> int:
    return launch(plan_sweep(arguments, multirun), console)


def resume_sweep(sweep_id: str, overrides: Sequence[str], console: Console) -> int:
    """Re-launch the failed, stale and never-started trials of a recorded sweep, each in its own run."""
    config = _compose_all(overrides)
    target = resolve_target(config["tracking"])
    check_reachable(target)
    record = SweepTracker(target.reader, target.experiment).sweep_record(sweep_id)
    if record is None:
        raise UserError(f"sweep {sweep_id!r}: no such sweep in {target.shown} (experiment {target.experiment!r})")
    plan = plan_sweep([*record.replayable_arguments, *overrides, f"sweep.name={sweep_id}"], record.multirun)
    return launch(plan, console, expected=record)


def launch(plan: SweepPlan, console: Console, expected: Optional[SweepRecord] = None) -> int:
    """Check every address, then create the runs and hand the trials to Hydra's launcher; returns the exit code."""
    from orchestrator.app import run_with_hydra
    from orchestrator.session import open_session

    target = resolve_target(plan.settings["tracking"])
    check_reachable(target)
    address = resolve_address(plan.settings["cluster"]) if plan.launcher == "ray" else None
    if address:
        check_ray_reachable(address)
    reader = SweepTracker(target.reader, target.experiment) if target.has_store else None
    if expected is None and reader is not None:
        expected = reader.sweep_record(plan.sweep_id)
    if expected is not None:
        refuse_changed_base(expected, plan)
    start_ray = plan.launcher == "ray" and _has_unfinished(reader, plan)
    with writable_store(target, while_starting=lambda: _start_ray(plan, start_ray, target)) as endpoint:
        tracker = SweepTracker(endpoint, target.experiment)
        session = open_session(plan, tracker, endpoint)
        skipped = len(plan.trials) - len(session.to_run)
        console.print(f"sweep [bold]{plan.sweep_id}[/]: {len(plan.trials)} trial(s), {len(session.to_run)} to run"
                      f"{f', skipping {skipped} finished or running' if skipped else ''}; launcher {plan.launcher}")
        if session.to_run:
            run_with_hydra(session)
        runs = tracker.trial_runs(plan.sweep_id)
        timeout = plan.settings["tracking"]["heartbeat_timeout"]
        statuses = [trial_status(runs[t.trial_id], timeout) for t in plan.trials]
        all_finished = all(s.state == FINISHED for s in statuses)
        if any(t.config["spectrum"]["enabled"] for t in plan.trials):
            log_metric_across_grid(tracker.client, session.parent_run_id, plan.trials, runs, "lambda_max")
        tracker.finish_parent(session.parent_run_id, all_finished)
    render(statuses, f"sweep {plan.sweep_id}", console)
    failed = [s for s in statuses if s.state != FINISHED]
    if failed:
        console.print(f"[red]{len(failed)} of {len(statuses)} trial(s) did not finish[/]; "
                      f"`sweep resume {plan.sweep_id}` re-runs them from their last checkpoints")
    return 0 if all_finished else 1


def _has_unfinished(reader: Optional[SweepTracker], plan: SweepPlan) -> bool:
    """Read-only: does any trial of the plan still need to run? (No store yet: all of them.)"""
    if reader is None:
        return True
    runs = reader.trial_runs(plan.sweep_id)
    return any(t.trial_id not in runs or runs[t.trial_id].info.status != "FINISHED" for t in plan.trials)


def _start_ray(plan: SweepPlan, needed: bool, target: TrackingTarget) -> None:
    """Connect to Ray and warm its workers up (imports of torch and the trainer) while the store starts."""
    if needed:
        from orchestrator.ray_launcher import warm_up

        connect(plan.settings["cluster"])
        refuse_remote_nodes_with_local_store(target)
        warm_up(plan.settings["cluster"], len(plan.trials))


def refuse_changed_base(record: SweepRecord, plan: SweepPlan) -> None:
    """Existing trial ids must keep meaning the same computation: a changed base config is a new sweep."""
    changed = changed_keys(record.base_identity, identity_config(plan.base_config))
    if changed:
        shown = ", ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, a, b in changed)
        raise UserError(f"sweep {plan.sweep_id}: the base config changed ({shown}); "
                        "start a new sweep (another sweep.name) instead")


def _show(value: Any) -> str:
    return "(unset)" if value is UNSET else json.dumps(value)


def _compose_all(overrides: Sequence[str]) -> dict[str, Any]:
    with composer() as compose:
        return to_container(compose(list(overrides)))


def spectrum_of_run(run_id: str, epoch: Optional[int], overrides: Sequence[str], console: Console) -> int:
    """`sweep spectrum RUN_ID`: a spectrum job on a stored checkpoint of a trial run, logged into that run."""
    from orchestrator.spectrum_command import launch_spectrum

    config = _compose_all(["spectrum=slq", *_only(overrides, SPECTRUM_PREFIXES)])
    validate(config)
    return launch_spectrum(run_id, epoch, config, console)


def _only(overrides: Sequence[str], prefixes: tuple[str, ...]) -> list[str]:
    bad = [o for o in overrides if not o.lstrip("+~").startswith(prefixes)]
    if bad:
        allowed = ", ".join(sorted({p.rstrip(".=") + ".*" for p in prefixes}))
        raise UserError(f"{bad[0]}: only {allowed} overrides are allowed here")
    return list(overrides)


def _where_to_run(overrides: Sequence[str]) -> dict[str, Any]:
    return _compose_all(_only(overrides, WHERE_TO_RUN_PREFIXES))


def show_status(sweep: Optional[str], overrides: Sequence[str], console: Console) -> int:
    config = _where_to_run(overrides)
    target = resolve_target(config["tracking"])
    check_reachable(target)
    tracker = SweepTracker(target.reader, target.experiment)
    sweep_id = sweep or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError(f"no sweep recorded yet in {target.shown} (experiment {target.experiment!r})")
    runs = tracker.trial_runs(sweep_id)
    if not runs:
        raise UserError(f"sweep {sweep_id!r}: no such sweep in experiment {target.experiment!r}")
    render([trial_status(r, config["tracking"]["heartbeat_timeout"]) for r in runs.values()], f"sweep {sweep_id}", console)
    return 0


def serve_ui(port: int, overrides: Sequence[str], console: Console) -> int:
    """The MLflow UI in the foreground: the user's server is only pointed at; the local store is served."""
    target = resolve_target(_where_to_run(overrides)["tracking"])
    if not target.is_local and target.uri and target.uri.startswith("http"):
        check_reachable(target)
        console.print(f"The MLflow UI of this store is served by its own server: {target.endpoint.uri}")
        return 0
    server = LocalMlflowServer(target.local_dir, port, tie_to_parent=True) if target.is_local else None
    if server is None:
        command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", str(target.uri)]
        return subprocess.call(command)
    with server as uri:
        console.print(f"MLflow UI: [bold]{uri}[/] (Ctrl-C to stop)")
        assert server.process is not None
        return server.process.wait()
