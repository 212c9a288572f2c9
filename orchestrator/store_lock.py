"""One `sweep` process at a time launches from a store directory (local Ray: no coordinator another process could
find), with the owner's PID in the lock file so that `sweep status` / `sweep cancel` can name and reach it."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from orchestrator.errors import UserError

LOCK_NAME = "sweep.lock"


@contextmanager
def store_lock(directory: Path, sweep_id: str) -> Iterator[None]:
    """Held while this process executes a sweep; a second process is refused in one line. The kernel drops the
    lock when its process dies, even by kill -9, so a crash never leaves the store locked."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `sweep` process ({_describe(path)}) is executing a sweep from {directory}/; "
                            "wait for it, follow it with `sweep status`, or stop it with `sweep cancel`") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()} {sweep_id}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def lock_holder(directory: Path) -> Optional[tuple[int, str]]:
    """(pid, sweep id) of the process executing a sweep from ``directory``, or None when no process holds it."""
    path = directory / LOCK_NAME
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, sweep_id = handle.read().strip().partition(" ")
            return (int(pid), sweep_id) if pid.isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _describe(path: Path) -> str:
    text = path.read_text().strip().split()
    return f"pid {text[0]}, sweep {text[1]}" if len(text) == 2 else "pid unknown"
