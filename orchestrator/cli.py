"""The ``sweep`` command: run, status, resume, cancel, spectrum, ui."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Optional, Sequence

from rich.console import Console
from rich.markup import escape

from orchestrator.errors import UserError
from orchestrator.settings import apply_local_only_env

# Wide enough for the summary table when the output is a file or a pipe (CI logs, tests).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Hydra sweeps of training and Hessian spectra on Ray, "
                                     "tracked in MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compose, validate and launch a sweep; finished trials are skipped")
    run.add_argument("-m", "--multirun", action="store_true", help="grid over comma lists, range() and choice()")
    run.add_argument("--detach", action="store_true", help="return once the cluster's coordinator has the plan")
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optimizer=sgd,adam optimizer.lr=0.01,0.1")
    status = sub.add_parser("status", help="the trials of a sweep (default: the latest)")
    status.add_argument("sweep", nargs="?", help="sweep id or name")
    status.add_argument("--all", dest="every_trial", action="store_true",
                        help="list every trial (by default a sweep of over 200 lists those not done)")
    status.add_argument("overrides", nargs="*", help="tracking.* overrides")
    resume = sub.add_parser("resume", help="re-launch the failed, stale and never-started trials of a sweep")
    resume.add_argument("sweep", help="sweep id or name")
    resume.add_argument("--detach", action="store_true", help="return once the cluster's coordinator has the plan")
    resume.add_argument("overrides", nargs="*", help="where-to-run overrides (tracking.*, cluster.*)")
    cancel = sub.add_parser("cancel", help="stop a sweep's coordinator and its trials (runs end KILLED, resumable)")
    cancel.add_argument("sweep", help="sweep id or name")
    cancel.add_argument("overrides", nargs="*", help="where-to-run overrides (cluster.*, tracking.*)")
    spectrum = sub.add_parser("spectrum", help="Lanczos / SLQ spectra of stored checkpoints: of a trial run, "
                              "or of every trial of a sweep; existing results are skipped")
    spectrum.add_argument("run_id", metavar="RUN_ID|SWEEP_ID", help="a trial's MLflow run id, or a sweep id")
    spectrum.add_argument("--epoch", type=int, default=None,
                          help="checkpoint epoch (default: the run's newest; for a sweep, each trial's last epoch)")
    spectrum.add_argument("overrides", nargs="*", help="spectrum.*, tracking.* and cluster.* overrides")
    ui = sub.add_parser("ui", help="the MLflow UI on the configured store, on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("overrides", nargs="*", help="tracking.* overrides")
    return parser


def _split_sweep_argument(sweep: Optional[str], overrides: list[str]) -> tuple[Optional[str], list[str]]:
    """``sweep status tracking.uri=...`` names no sweep: an argument with '=' is an override."""
    if sweep is not None and "=" in sweep:
        return None, [sweep, *overrides]
    return sweep, overrides


def main(argv: Optional[Sequence[str]] = None) -> int:
    # A `sweep` started in the background (`nohup sweep run ... &` from a script) inherits SIGINT ignored, and Python
    # then never raises KeyboardInterrupt: Ctrl-C and `sweep cancel` (which sends SIGINT) would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    apply_local_only_env()
    parser = _parser()
    # Overrides may follow options (`sweep spectrum RUN --epoch 3 spectrum.steps=50`): argparse leaves them over.
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    try:
        if args.command == "run":
            from orchestrator.commands import run_sweep

            return run_sweep(args.overrides, args.multirun, console, detach=args.detach)
        if args.command == "status":
            from orchestrator.commands import show_status

            sweep, overrides = _split_sweep_argument(args.sweep, args.overrides)
            return show_status(sweep, overrides, console, every_trial=args.every_trial)
        if args.command == "resume":
            from orchestrator.commands import resume_sweep

            return resume_sweep(args.sweep, args.overrides, console, detach=args.detach)
        if args.command == "cancel":
            from orchestrator.commands import cancel_sweep

            return cancel_sweep(args.sweep, args.overrides, console)
        if args.command == "spectrum":
            from orchestrator.commands import spectrum_of_run

            return spectrum_of_run(args.run_id, args.epoch, args.overrides, console)
        if args.command == "ui":
            from orchestrator.commands import serve_ui

            return serve_ui(args.port, args.overrides, console)
    except UserError as error:
        # escape: a message quotes the user's values, and [a,b] in one is a list, not a style.
        err_console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 2


def entry() -> None:
    sys.exit(main())
