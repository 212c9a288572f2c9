"""The layout of a trial run's artifacts, shared by both planes (no torch here)."""

from __future__ import annotations

from typing import Iterable, Optional

CHECKPOINT_DIR = "checkpoints"
CHECKSUM_SUFFIX = ".sha256"
SPECTRUM_DIR = "spectrum"
# The trial's resolved config, so that `sweep spectrum` can rebuild the model exactly.
TRIAL_CONFIG = "trial_config.json"


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.pt"


def checkpoint_path(epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/{checkpoint_name(epoch)}"


def epoch_of(name: str) -> Optional[int]:
    """The epoch a checkpoint file name stands for, or None for other files."""
    if not (name.startswith("epoch_") and name.endswith(".pt")):
        return None
    digits = name[len("epoch_") : -len(".pt")]
    return int(digits) if digits.isdigit() else None


def checkpoint_epochs(names: Iterable[str]) -> list[int]:
    return sorted(e for e in map(epoch_of, names) if e is not None)
