"""The layout of a trial run's artifacts, shared by both planes (no torch here)."""

from __future__ import annotations

import re
from typing import Iterable, Optional

CHECKPOINT_DIR = "checkpoints"
# The sidecar of a checkpoint written before names carried their digest (still read, and pruned with its checkpoint).
CHECKSUM_SUFFIX = ".sha256"
_CHECKPOINT = re.compile(r"epoch_(\d+)(?:\.([0-9a-f]{64}))?\.pt")
SPECTRUM_DIR = "spectrum"
# The trial's resolved config, so that `sweep spectrum` can rebuild the model exactly.
TRIAL_CONFIG = "trial_config.json"
# On a sweep's parent run: its plan record (base config, grid, trial ids), read by `sweep resume`.
PLAN_ARTIFACT = "sweep.json"
# On a sweep's parent run: the status rows of its finished trials, so that `sweep status` need not read every run
# (orchestrator/status_summary.py).
STATUS_SUMMARY = "status_summary.json"


def checkpoint_name(epoch: int, sha256: Optional[str] = None) -> str:
    """``epoch_0004.<sha256>.pt``: the name carries the digest of its content, so that one upload stores a checkpoint
    that verifies itself (a truncated or corrupt file never matches its name). ``epoch_0004.pt``, checked against an
    ``epoch_0004.pt.sha256`` sidecar, is how checkpoints were written before; they are still read."""
    return f"epoch_{epoch:04d}.{sha256}.pt" if sha256 else f"epoch_{epoch:04d}.pt"


def parse_checkpoint_name(name: str) -> Optional[tuple[int, Optional[str]]]:
    """(epoch, digest) of a checkpoint file name (digest None for the sidecar layout), or None for other files."""
    match = _CHECKPOINT.fullmatch(name)
    return (int(match.group(1)), match.group(2)) if match else None


def checkpoint_files(names: Iterable[str]) -> dict[int, str]:
    """Epoch -> checkpoint file name, of the names in a run's checkpoint directory (a digest-named file wins over a
    sidecar-layout one of the same epoch)."""
    files: dict[int, str] = {}
    for name in sorted(names):
        parsed = parse_checkpoint_name(name)
        if parsed is not None and (parsed[0] not in files or parsed[1] is not None):
            files[parsed[0]] = name
    return files


def checkpoint_epochs(names: Iterable[str]) -> list[int]:
    return sorted(checkpoint_files(names))


def checkpoint_artifacts(name: str) -> list[str]:
    """The artifact paths that make up one stored checkpoint: the file, and its sidecar in the older layout."""
    path = f"{CHECKPOINT_DIR}/{name}"
    parsed = parse_checkpoint_name(name)
    return [path] if parsed is not None and parsed[1] is not None else [path, path + CHECKSUM_SUFFIX]


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
