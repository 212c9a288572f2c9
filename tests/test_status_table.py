"""What `sweep status` and the end of `sweep run` print: every trial of a sweep up to ROW_LIMIT, beyond it a count
of every state and the trials that need attention."""

from __future__ import annotations

import io

from rich.console import Console

from orchestrator.status import ROW_LIMIT, TrialStatus, render
from workers.vocabulary import TrialState


def _statuses(states: list[TrialState]) -> list[TrialStatus]:
    return [TrialStatus(trial_id=f"trial-{i:04d}", run_id=f"run{i}", overrides=(f"trainer.seed={i}",), state=state,
                        epoch=1, checkpoint_epoch=1, attempts=1, test_acc=0.5, train_loss=0.1, error=None, node="")
            for i, state in enumerate(states)]


def _printed(statuses: list[TrialStatus], every_trial: bool = False) -> str:
    console = Console(file=io.StringIO(), width=200)
    render(statuses, "grid", console, every_trial=every_trial)
    return console.file.getvalue()


def test_a_sweep_within_the_limit_lists_every_trial():
    printed = _printed(_statuses([TrialState.FINISHED] * ROW_LIMIT))
    assert printed.count("trial-") == ROW_LIMIT and "not listed" not in printed


def test_a_larger_sweep_counts_every_state_and_lists_the_trials_not_done_worst_first():
    states = [TrialState.FINISHED] * (ROW_LIMIT + 40) + [TrialState.RUNNING, TrialState.FAILED, TrialState.PRUNED]
    printed = _printed(_statuses(states))
    assert f"grid: {ROW_LIMIT + 43} trial(s): {ROW_LIMIT + 40} finished, 1 running, 1 failed, 1 pruned" in printed
    listed = [line.split()[1] for line in printed.splitlines() if "trial-" in line]
    assert listed == [f"trial-{ROW_LIMIT + 41:04d}", f"trial-{ROW_LIMIT + 40:04d}"]
    assert f"{ROW_LIMIT + 41} of {ROW_LIMIT + 43} trial(s) not listed; `sweep status grid --all`" in printed
    every = _printed(_statuses(states), every_trial=True)
    assert every.count("trial-") == ROW_LIMIT + 43 and "not listed" not in every
