"""Hand a prepared sweep to Hydra: its sweeper expands the grid and the configured launcher runs the trials.

With ``hydra/launcher=ray`` (the default) our launcher submits Ray tasks; with ``hydra/launcher=basic`` Hydra
calls :func:`trial_task` for one grid point after another in this process, a debugging mode.
"""

from __future__ import annotations

import sys
import tempfile

import hydra
from omegaconf import DictConfig

from orchestrator.composition import to_container
from orchestrator.schema import register_configs
from orchestrator.session import SweepSession, activate, active
from orchestrator.settings import CONF_DIR


def trial_task(cfg: DictConfig) -> str:
    session = active()
    trial = session.trial_for(to_container(cfg))
    if trial.trial_id in session.skipped:
        return "SKIPPED"
    from workers.spec import TRAINED
    from workers.training.trial import run_trial

    outcome = run_trial(session.spec(trial))
    if outcome.state == TRAINED:
        from workers.spectrum_job import run_spectrum_job

        outcome = run_spectrum_job(session.spectrum_spec(trial))
    return outcome.state


def run_with_hydra(session: SweepSession) -> None:
    """Always a Hydra multirun: a single grid point is a sweep of one, so it goes through the launcher too."""
    register_configs()
    activate(session)
    saved_argv = sys.argv
    # Hydra's sweeper writes the composed config, addresses and credentials included, to multirun.yaml in its sweep
    # directory; the runs live in MLflow, so that directory is scratch that goes when the sweep does.
    with tempfile.TemporaryDirectory(prefix="sweep-hydra-") as scratch:
        sys.argv = ["sweep", "--multirun", *session.plan.arguments, f"hydra.sweep.dir={scratch}"]
        try:
            hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(trial_task)()
        finally:
            sys.argv = saved_argv
            activate(None)
