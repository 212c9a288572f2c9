"""Whether a local process is still running, as the kernel tells it."""

from __future__ import annotations

from pathlib import Path


def is_running(pid: int) -> bool:
    """The process exists and has not ended (a zombie, not yet reaped by its parent, has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
