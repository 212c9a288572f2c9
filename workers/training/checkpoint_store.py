"""Checkpoints kept in the trial's MLflow run, so that any node can resume the trial."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional

from workers.artifacts import CHECKPOINT_DIR, CHECKSUM_SUFFIX, checkpoint_epochs, checkpoint_path
from workers.run_artifacts import RunArtifacts
from workers.training.checkpoint import TrainingState, read_checkpoint, write_checkpoint


class CheckpointStore:
    """Writes checkpoints locally, uploads them to the run, keeps the newest ``keep`` of them there.

    Checkpoints of ``protected`` epochs (those a spectrum is computed at) are never pruned.

    The epochs stored are listed from the run once, then kept here: this store is the run's one checkpoint writer
    while it lives (the sweep's one owner runs one attempt of a trial at a time). ``empty=True`` says the run is
    known to hold none (created for this attempt), so not even that first listing is needed.
    """

    def __init__(self, artifacts: RunArtifacts, scratch: Path, keep: int, protected: Iterable[int] = (),
                 empty: bool = False) -> None:
        self.artifacts = artifacts
        self.run_id = artifacts.run_id
        self.scratch = scratch
        self.keep = keep
        self.protected = frozenset(protected)
        self._stored: Optional[list[int]] = [] if empty else None

    def save(self, state: TrainingState) -> None:
        """Upload the checkpoint, then prune: an older checkpoint goes only once a newer one is stored."""
        path = write_checkpoint(state, self.scratch / "out")
        self.artifacts.upload(path.with_name(path.name + CHECKSUM_SUFFIX), CHECKPOINT_DIR)
        # The checkpoint itself goes last: a checkpoint without its checksum file is never taken as valid.
        self.artifacts.upload(path, CHECKPOINT_DIR)
        self._stored = sorted({*self.epochs(), state.epoch})
        self._prune()

    def epochs(self) -> list[int]:
        if self._stored is None:
            self._stored = checkpoint_epochs(self.artifacts.names(CHECKPOINT_DIR))
        return list(self._stored)

    def latest(self) -> Optional[TrainingState]:
        """The newest checkpoint of the run that verifies; each newer corrupt one is skipped with a warning."""
        for epoch in reversed(self.epochs()):
            try:
                return self.load(epoch)
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint falls back to the previous
                warnings.warn(f"checkpoint {checkpoint_path(epoch)} of run {self.run_id} is unusable ({error}); "
                              "falling back to the previous one", stacklevel=2)
        return None

    def load(self, epoch: int) -> TrainingState:
        """The verified checkpoint of ``epoch``; raises if it is missing, corrupt or truncated."""
        name = checkpoint_path(epoch)
        path = self.artifacts.download(name, self.scratch / "in")
        self.artifacts.download(name + CHECKSUM_SUFFIX, self.scratch / "in")
        return read_checkpoint(path)

    def _prune(self) -> None:
        for epoch in self.epochs()[: -self.keep]:
            if epoch not in self.protected:
                # The checkpoint before its checksum: a checksum without its checkpoint is simply ignored.
                for artifact in (checkpoint_path(epoch), checkpoint_path(epoch) + CHECKSUM_SUFFIX):
                    self.artifacts.delete(artifact)
                self._stored = [e for e in self.epochs() if e != epoch]

