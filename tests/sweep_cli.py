"""Run the `sweep` command from tests: as a user does (a subprocess), or in the test process on the session's Ray."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator


def run_sweep_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `sweep` console script in a subprocess, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("sweep")), *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


def run_sweep_here(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The same command in the test process, for commands on the session's Ray (``cluster.address``) and `status`.

    Ray keeps a job's idle workers: the trials of commands run here reuse workers that imported torch for an earlier
    test, where each `sweep` process is a job of its own with cold workers (about 6 s more per command). What only a
    process of its own shows (the console script, detach, a killed or interrupted command, a local Ray) stays with
    :func:`run_sweep_cli`."""
    from orchestrator.cli import main

    assert args[0] == "status" or any(a.startswith("cluster.address=") for a in args), \
        "in the test process, a command that would start a local Ray would use the session's instead"
    stdout, stderr = io.StringIO(), io.StringIO()
    with _environment(env or {}), contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["sweep", *args], code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
