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


def spectrum_dir(protocol_id: str) -> str:
    """A trial run's results of one spectrum protocol: ``spectrum/<protocol>/epoch_<n>.json`` (and ``.png``)."""
    return f"{SPECTRUM_DIR}/{protocol_id}"


def spectrum_record_name(epoch: int) -> str:
    return f"epoch_{epoch}.json"


def spectrum_progress_name(epoch: int) -> str:
    """The Lanczos progress of an unfinished spectrum, for a retried or resumed job to continue from."""
    return f"epoch_{epoch}.progress.pt"


def spectrum_epochs_done(names: Iterable[str]) -> set[int]:
    """Epochs whose result a protocol's directory holds."""
    done = set()
    for name in names:
        digits = name[len("epoch_") : -len(".json")] if name.startswith("epoch_") and name.endswith(".json") else ""
        if digits.isdigit():
            done.add(int(digits))
    return done
