"""The subcommands' work: what ``sweep run``, ``sweep status`` and ``sweep ui`` do, in the order they do it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from rich.console import Console

from orchestrator.composition import composer, to_trial_config
from orchestrator.errors import UserError
from orchestrator.mlflow_server import LocalMlflowServer
from orchestrator.identity import UNSET, changed_keys, identity_config
from orchestrator.planning import SweepPlan, plan_sweep
from orchestrator.ray_cluster import check_reachable as check_ray_reachable, connect, resolve_address
from orchestrator.execution import (SweepResult, ask_cancel_or_detach, execute_in_process, follow, is_interactive,
                                    submit_to_coordinator)
from orchestrator.resources import alive_node_resources, check_satisfiable
from orchestrator.status import render, with_owner_state
from orchestrator.status_summary import read_statuses, write_summary
from orchestrator.processes import is_running
from orchestrator.store_lock import lock_holder
from orchestrator.sweep_guard import local_sweep_hold
from orchestrator.sweep_book import SweepOrder
from orchestrator.validation import validate
from orchestrator.tracking import SweepRecord, SweepTracker, TrackingTarget, check_reachable, resolve_target
from orchestrator.topology import refuse_remote_nodes_with_local_store
from workers.tracking_endpoint import TrackingEndpoint
from workers.vocabulary import TrialState
from workers.trial_config import TrialConfig, as_plain

WHERE_TO_RUN_PREFIXES = ("tracking.", "cluster.", "tracking=", "cluster=")
# Test-only fault injection: JSON mapping an override (e.g. "optimizer.lr=0.1") to worker faults
# ({"raise_at_epoch": 1} or {"nan_at_epoch": 1}); never part of any trial's identity.
FAULTS_ENV = "SWEEP_FAULTS"
# How long `sweep cancel` waits for a local `sweep` process to stop its trials and exit.
CANCEL_WAIT_S = 120.0
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


def run_sweep(arguments: Sequence[str], multirun: bool, console: Console, detach: bool = False) -> int:
    """A grid (Hydra's basic sweeper) is planned whole, then executed; another sweeper (Optuna) searches."""
    from orchestrator.search_plan import sweeper_choice

    sweeper = sweeper_choice(arguments)
    if sweeper is not None:
        from orchestrator.search import run_search

        return run_search(arguments, sweeper, multirun, console, detach)
    return launch(plan_sweep(arguments, multirun), console, detach=detach)


def resume_sweep(sweep_id: str, overrides: Sequence[str], console: Console, detach: bool = False) -> int:
    """Re-launch the failed, stale and never-started trials of a recorded sweep, each in its own run."""
    config = _compose_all(overrides)
    target = resolve_target(config.tracking)
    check_reachable(target)
    record = SweepTracker(target.reader, target.experiment).sweep_record(sweep_id)
    if record is None:
        raise UserError(f"sweep {sweep_id!r}: no such sweep in {target.shown} (experiment {target.experiment!r})")
    arguments = [*record.replayable_arguments, *overrides, f"sweep.name={sweep_id}"]
    from orchestrator.search_plan import sweeper_choice

    sweeper = sweeper_choice(arguments)
    if sweeper is not None:
        from orchestrator.search import run_search

        # A search resumes as it continues: the study asks for the trials still missing from n_trials.
        return run_search(arguments, sweeper, record.multirun, console, detach)
    plan = plan_sweep(arguments, record.multirun)
    return launch(plan, console, expected=record, detach=detach)


def launch(plan: SweepPlan, console: Console, expected: Optional[SweepRecord] = None, detach: bool = False) -> int:
    """Check every address and input, then execute the plan (Ray coordinator or in-process); returns the exit code."""
    target = resolve_target(plan.base_config.tracking)
    check_reachable(target)
    address = resolve_address(plan.base_config.cluster) if plan.launcher == "ray" else None
    if address:
        check_ray_reachable(address)
    if detach and (address is None or target.needs_local_server):
        raise UserError("--detach: the sweep must outlive this command, so it needs a cluster (cluster.address or "
                        "RAY_ADDRESS) and an MLflow server every node reaches (tracking.uri=http://HOST:PORT)")
    reader = SweepTracker(target.reader, target.experiment) if target.has_store else None
    if expected is None and reader is not None:
        expected = reader.sweep_record(plan.sweep_id)
    if expected is not None:
        refuse_changed_base(expected, plan)
    if reader is not None and not _has_unfinished(reader, plan):
        console.print(f"sweep [bold]{plan.sweep_id}[/]: {len(plan.trials)} trial(s), 0 to run, "
                      f"skipping {len(plan.trials)} finished")
        return _summarise(plan, reader, console, all_finished=True)
    faults = json.loads(os.environ.get(FAULTS_ENV, "{}"))
    with ExitStack() as stack:
        if address is None:
            stack.enter_context(local_sweep_hold(target, plan))
        endpoint = stack.enter_context(writable_store(target, while_starting=lambda: _start_ray(plan, target)))
        order = SweepOrder(plan, endpoint, faults)
        if plan.launcher == "basic":
            result = execute_in_process(order, console)
        else:
            coordinator = submit_to_coordinator(order, console, detached=address is not None)
            if detach:
                console.print(f"detached: the sweep runs on the cluster; `sweep status {plan.sweep_id}` follows it, "
                              f"`sweep cancel {plan.sweep_id}` stops it")
                return 0
            outcome = _follow_or_stop(coordinator, plan, console, on_cluster=address is not None)
            if isinstance(outcome, int):
                return outcome
            result = outcome
    if result.error:
        console.print(f"[red]the sweep's coordinator failed:[/] {result.error}")
    return _summarise(plan, SweepTracker(target.reader, target.experiment), console, result.all_finished)


def _follow_or_stop(coordinator: Any, plan: SweepPlan, console: Console, on_cluster: bool) -> SweepResult | int:
    """Follow the sweep to its end; on Ctrl-C, cancel it (or, on a cluster, detach if the user says so)."""
    import ray

    try:
        progress = follow(coordinator, console)
    except KeyboardInterrupt:
        if ask_cancel_or_detach(on_cluster and is_interactive()) == "detach":
            console.print(f"detached: the sweep goes on; `sweep status {plan.sweep_id}` follows it")
            return 0
        try:
            cancelled = ray.get(coordinator.cancel.remote(), timeout=120) or 0
        except ray.exceptions.RayError:
            cancelled = 0
        console.print(f"cancelled: {cancelled} trial(s) stopped, their runs end KILLED; "
                      f"`sweep resume {plan.sweep_id}` picks them up from their last checkpoints")
        return 130
    if progress is None:
        return SweepResult((), 0, "the coordinator went away before the sweep ended (cancelled?)")
    return SweepResult(progress.outcomes, progress.skipped, progress.error)


def _summarise(plan: SweepPlan, reader: SweepTracker, console: Console, all_finished: bool) -> int:
    """The summary table from one read of the sweep's runs (through the summary its coordinator kept), kept for
    `sweep status` unless the kept one is as good; exit 1 when any trial did not finish."""
    read = read_statuses(reader, plan.sweep_id)
    if read.worth_keeping:
        write_summary(reader, read)
    statuses = [read.statuses[t.trial_id] for t in plan.trials if t.trial_id in read.statuses]
    render(statuses, plan.sweep_id, console)
    failed = len(plan.trials) - sum(s.state == TrialState.FINISHED for s in statuses)
    if failed:
        console.print(f"[red]{failed} of {len(plan.trials)} trial(s) did not finish[/]; "
                      f"`sweep resume {plan.sweep_id}` re-runs them from their last checkpoints")
    return 0 if all_finished and not failed else 1


def _has_unfinished(reader: SweepTracker, plan: SweepPlan) -> bool:
    """Read-only: does any trial of the plan still need to run?"""
    statuses = read_statuses(reader, plan.sweep_id).statuses
    return any(t.trial_id not in statuses or statuses[t.trial_id].state != TrialState.FINISHED for t in plan.trials)


def _start_ray(plan: SweepPlan, target: TrackingTarget) -> None:
    """Connect to Ray, refuse what it can never run, and warm its workers up while a local store starts.

    Only a local server's boot leaves time to warm up in: against a running server the coordinator starts at once,
    and warm-ups only compete with it for the CPUs (32 trivial trials against a stock server, 2 cores: first run
    after 13.1-13.4 s without, 16.5-20.8 s with; wall 28.0-29.1 s against 29.5-32.6 s)."""
    if plan.launcher != "ray":
        return
    from orchestrator.ray_launcher import warm_up

    connect(plan.base_config.cluster)
    refuse_remote_nodes_with_local_store(target)
    check_satisfiable(plan.base_config.cluster, plan.base_config.spectrum, alive_node_resources())
    if target.needs_local_server:
        warm_up(plan.base_config.cluster, plan.base_config.dataset, len(plan.trials))


def refuse_changed_base(record: SweepRecord, plan: SweepPlan) -> None:
    """Existing trial ids must keep meaning the same computation: a changed base config is a new sweep."""
    changed = changed_keys(record.base_identity, identity_config(as_plain(plan.base_config)))
    if changed:
        shown = ", ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, a, b in changed)
        raise UserError(f"sweep {plan.sweep_id}: the base config changed ({shown}); "
                        "start a new sweep (another sweep.name) instead")


def _show(value: Any) -> str:
    return "(unset)" if value is UNSET else json.dumps(value)


def _compose_all(overrides: Sequence[str]) -> TrialConfig:
    with composer() as compose:
        return to_trial_config(compose(list(overrides)))


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


def _where_to_run(overrides: Sequence[str]) -> TrialConfig:
    return _compose_all(_only(overrides, WHERE_TO_RUN_PREFIXES))


def show_status(sweep: Optional[str], overrides: Sequence[str], console: Console, every_trial: bool = False) -> int:
    """The sweep's trials from one read of MLflow; with a live owner, its own word on what is queued and running."""
    config = _where_to_run(overrides)
    target = resolve_target(config.tracking)
    check_reachable(target)
    tracker = SweepTracker(target.reader, target.experiment)
    sweep_id = sweep or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError(f"no sweep recorded yet in {target.shown} (experiment {target.experiment!r})")
    read = read_statuses(tracker, sweep_id)
    if not read.statuses:
        raise UserError(f"sweep {sweep_id!r}: no such sweep in experiment {target.experiment!r}")
    if read.worth_keeping:
        write_summary(tracker, read)
    statuses = list(read.statuses.values())
    live = _live_states(sweep_id, config)
    if live is not None:
        statuses = [with_owner_state(s, live) for s in statuses]
    render(statuses, sweep_id, console, live=live is not None, every_trial=every_trial)
    unlaunched = len(set(live or ()) - set(read.statuses))
    if unlaunched:
        console.print(f"and {unlaunched} more trial(s) queued by its coordinator (a trial's run is created when it is "
                      "submitted)")
    return 0


def _live_states(sweep_id: str, config: TrialConfig) -> Optional[dict[str, TrialState]]:
    """Trial id -> queued/running from the sweep's live coordinator on the configured cluster; None without one."""
    cluster = config.cluster
    address = resolve_address(cluster)
    if address is None:
        return None
    import ray

    from orchestrator.coordinator import ask_coordinator

    check_ray_reachable(address)
    connect(cluster)
    try:
        return ask_coordinator(sweep_id, config.tracking, "trial_states", timeout=30)
    except ray.exceptions.RayError:
        return None


def cancel_sweep(sweep_id: str, overrides: Sequence[str], console: Console) -> int:
    """Stop a sweep's owner and its tasks: the coordinator on the cluster, or the local `sweep` process."""
    config = _where_to_run(overrides)
    address = resolve_address(config.cluster)
    if address is not None:
        from orchestrator.coordinator import ask_coordinator

        check_ray_reachable(address)
        connect(config.cluster)
        count = ask_coordinator(sweep_id, config.tracking, "cancel", timeout=120)
        if count is None:
            raise UserError(f"sweep {sweep_id!r}: no live coordinator on cluster {address}; nothing to cancel")
        stopped = f"{count} trial(s) stopped"
    else:
        stopped = _interrupt_local_owner(sweep_id, resolve_target(config.tracking).local_dir)
    console.print(f"sweep {sweep_id}: cancelled ({stopped}); its unfinished runs end KILLED; "
                  f"`sweep resume {sweep_id}` picks them up later")
    return 0


def _interrupt_local_owner(sweep_id: str, directory: Path) -> str:
    """Ctrl-C for the local `sweep` process that executes the sweep: it cancels its own trials and exits."""
    holder = lock_holder(directory)
    if holder is None or holder[1] != sweep_id:
        raise UserError(f"sweep {sweep_id!r}: no `sweep` process executes it from {directory}/; nothing to cancel "
                        "(for a sweep on a cluster, give cluster.address)")
    pid = holder[0]
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_running(pid):
        raise UserError(f"sweep {sweep_id!r}: its `sweep` process (pid {pid}) was interrupted but has not exited "
                        f"within {CANCEL_WAIT_S:.0f} s")
    return f"its `sweep` process, pid {pid}, stopped its trials and exited"


def serve_ui(port: int, overrides: Sequence[str], console: Console) -> int:
    """The MLflow UI in the foreground: the user's server is only pointed at; the local store is served."""
    target = resolve_target(_where_to_run(overrides).tracking)
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
