"""``sweep run -m hydra/sweeper=optuna ...``: a search instead of a grid. Hydra's own multirun drives the sweeper,
whose batches our launcher (hydra_plugins/curvature_sweeps) runs through the sweep's coordinator, as a grid's trials
run. The study lives under the sweep's store (orchestrator/study.py), so the same command run again continues it:
only the trials still missing from ``hydra.sweeper.n_trials`` are asked for, and a trial whose config the sweep has
already finished (or pruned) reuses its run. With ``sweep.pruner=median`` the search stops unpromising trials early
(orchestrator/search_batch.py): a pruned trial is done, not failed.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any, Optional, Sequence

from mlflow.entities import Metric, RunTag
from rich.console import Console

from orchestrator.composition import composer
from orchestrator.errors import UserError
from orchestrator.planning import SweepPlan
from orchestrator.ray_cluster import check_reachable as check_ray_reachable, resolve_address
from orchestrator.search_plan import driver_overrides, plan_search, require_extra
from orchestrator.status import DONE, render, trial_status
from orchestrator.sweep_guard import local_sweep_hold
from orchestrator.study import completed_trials, study_path
from orchestrator.tracking import SweepTracker, check_reachable, resolve_target
from workers.vocabulary import BEST_RUN_TAG, BEST_TRIAL_TAG, RunStatus, TrialState



def _hydra_first(arguments: Sequence[str]) -> list[str]:
    """Hydra's own order (its overrides, then the task's): how the launcher reads them back from Hydra's record."""
    is_hydra = [a.lstrip("+~").startswith(("hydra.", "hydra/")) for a in arguments]
    return [a for a, h in zip(arguments, is_hydra) if h] + [a for a, h in zip(arguments, is_hydra) if not h]


def run_search(arguments: Sequence[str], sweeper: str, multirun: bool, console: Console, detach: bool) -> int:
    from orchestrator.commands import _start_ray, refuse_changed_base, writable_store

    require_extra(sweeper)
    if not multirun:
        raise UserError(f"hydra/sweeper={sweeper}: a search needs --multirun (-m)")
    if detach:
        raise UserError("--detach: a search's sampler runs in the `sweep` command, which must stay for the search")
    arguments = _hydra_first(arguments)
    with composer() as compose:
        plan = plan_search(compose, arguments)
        sweeper_config = compose(_fixed(arguments)).hydra.sweeper
        n_trials = int(sweeper_config.n_trials)
        seed = sweeper_config.sampler.get("seed")
    target = resolve_target(plan.base_config.tracking)
    check_reachable(target)
    address = resolve_address(plan.base_config.cluster)
    if address:
        check_ray_reachable(address)
    reader = SweepTracker(target.reader, target.experiment) if target.has_store else None
    record = reader.sweep_record(plan.sweep_id) if reader is not None else None
    if record is not None:
        refuse_changed_base(record, plan)
    path = study_path(target, plan.sweep_id)
    done = completed_trials(path, plan.sweep_id)
    pruner = plan.base_config.sweep.pruner
    console.print(f"sweep [bold]{plan.sweep_id}[/]: {sweeper} search, {n_trials} trial(s), "
                  f"{max(n_trials - done, 0)} to run{f', {done} done' if done else ''}; launcher ray"
                  f"{f'; {pruner} pruner' if pruner else ''}")
    error = None
    if done < n_trials:
        with ExitStack() as stack:
            if address is None:
                stack.enter_context(local_sweep_hold(target, plan))
            endpoint = stack.enter_context(writable_store(target, while_starting=lambda: _start_ray(plan, target)))
            store_uri = endpoint.uri if target.needs_local_server else None
            overrides = [*arguments, *driver_overrides(plan, n_trials - done, done, seed, str(path),
                                                       str(target.local_dir.absolute() / "hydra" / plan.sweep_id),
                                                       store_uri)]
            error = _multirun(overrides)
            record_best(SweepTracker(endpoint, target.experiment), plan)
    elif reader is not None:
        record_best(SweepTracker(target.reader, target.experiment), plan)
    if error:
        console.print(f"[red]the search stopped:[/] {error}")
    return _summarise(plan, SweepTracker(target.reader, target.experiment), console, error is None)


def _fixed(arguments: Sequence[str]) -> list[str]:
    from orchestrator.grid import single_valued

    return single_valued(arguments)


def _multirun(overrides: list[str]) -> Optional[str]:
    """Hydra's multirun with our config tree: the sweeper asks, our launcher runs; None, or why it stopped."""
    from hydra.core.global_hydra import GlobalHydra

    logging.getLogger("optuna").setLevel(logging.WARNING)
    with composer():
        try:
            GlobalHydra.instance().hydra.multirun(config_name="config", task_function=_not_called,
                                                  overrides=overrides, with_log_configuration=False)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - the sweeper's own failures (e.g. max_failure_rate) end in one line
            return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return None


def _not_called(_: Any) -> None:
    raise AssertionError("trials run through the sweep's coordinator, not in the driver")


def record_best(tracker: SweepTracker, plan: SweepPlan) -> None:
    """The parent run's record of the best finished trial: tags best_trial and best_run_id, metric best_<objective>."""
    sweep = plan.base_config.sweep
    name, sign = sweep.objective, 1.0 if sweep.objective_mode == "max" else -1.0
    parent = tracker.find_parent(plan.sweep_id)
    scored = [(sign * run.data.metrics[name], tid, run) for tid, run in tracker.trial_runs(plan.sweep_id).items()
              if run.info.status == RunStatus.FINISHED and name in run.data.metrics]
    if parent is None or not scored:
        return
    _, tid, best = max(scored, key=lambda s: s[0])
    tracker.client.log_batch(parent.info.run_id, metrics=[Metric(f"best_{name}", best.data.metrics[name], int(time.time() * 1000), 0)],
                             tags=[RunTag(BEST_TRIAL_TAG, tid), RunTag(BEST_RUN_TAG, best.info.run_id)])


def _summarise(plan: SweepPlan, reader: SweepTracker, console: Console, ok: bool) -> int:
    runs = reader.trial_runs(plan.sweep_id)
    statuses = [trial_status(run) for run in runs.values()]
    render(statuses, plan.sweep_id, console)
    failed = sum(s.state not in DONE for s in statuses)
    pruned = sum(s.state == TrialState.PRUNED for s in statuses)
    if pruned:
        console.print(f"{pruned} of {len(statuses)} trial(s) pruned: stopped early, their runs KILLED with a "
                      "`pruned` tag")
    if failed:
        console.print(f"[red]{failed} of {len(statuses)} trial(s) did not finish[/]")
    return 0 if ok and not failed else 1
