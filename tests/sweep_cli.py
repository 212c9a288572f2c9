"""Run the `sweep` console script as a user does, from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_sweep_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `sweep` console script in a subprocess, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("sweep")), *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )
