"""Checkpoints kept in the trial's MLflow run, so that any node can resume the trial."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Optional

from workers.artifacts import CHECKPOINT_DIR, checkpoint_artifacts, checkpoint_files
from workers.run_artifacts import RunArtifacts
from workers.training.checkpoint import TrainingState, read_checkpoint, seal_checkpoint, write_unsealed


class CheckpointStore:
    """Writes checkpoints locally, uploads them to the run in the background, keeps the newest ``keep`` there.

    ``save`` writes the file (the state's tensors are the live model's, so this cannot wait) and returns; its digest,
    the upload and the pruning it allows run on a thread while the next epoch trains. One upload is in flight at a
    time: the next ``save`` waits for the previous one, and leaving the ``with`` block waits for the last (raising its
    error, unless the block is already failing). Guarantees: a checkpoint's name carries its digest, so a partial
    upload is never taken as valid; an older checkpoint is pruned only once a newer one is stored, and a file of the
    same epoch is replaced, not left behind; ``on_stored(epoch)`` is called once a checkpoint is stored.

    Checkpoints of ``protected`` epochs (those a spectrum is computed at) are never pruned.

    The files stored are listed from the run once, then kept here: this store is the run's one checkpoint writer
    while it lives (the sweep's one owner runs one attempt of a trial at a time). ``empty=True`` says the run is
    known to hold none (created for this attempt), so not even that first listing is needed.
    """

    def __init__(self, artifacts: RunArtifacts, scratch: Path, keep: int, protected: Iterable[int] = (),
                 empty: bool = False, on_stored: Callable[[int], None] = lambda epoch: None) -> None:
        self.artifacts = artifacts
        self.run_id = artifacts.run_id
        self.scratch = scratch
        self.keep = keep
        self.protected = frozenset(protected)
        self.on_stored = on_stored
        self._files: Optional[dict[int, str]] = {} if empty else None
        self._upload: Optional[threading.Thread] = None
        self._upload_error: Optional[BaseException] = None

    def __enter__(self) -> "CheckpointStore":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        if error is None:
            self.wait()
        elif self._upload is not None:
            self._upload.join()  # the scratch directory must outlive the upload; the block's own error wins

    def save(self, state: TrainingState) -> None:
        """Write the checkpoint now; digest, store and prune in the background."""
        unsealed = write_unsealed(state, self.scratch / "out")
        self.wait()
        self._files_stored()  # listed here, not on the uploader's thread
        self._upload = threading.Thread(target=self._store, args=(state.epoch, unsealed), name="checkpoint-upload",
                                        daemon=True)
        self._upload.start()

    def wait(self) -> None:
        """Wait for the upload in flight; raises its error, if it failed."""
        if self._upload is not None:
            self._upload.join()
            self._upload = None
        error, self._upload_error = self._upload_error, None
        if error is not None:
            raise error

    def _store(self, epoch: int, unsealed: Path) -> None:
        try:
            path = seal_checkpoint(unsealed)
            self.artifacts.upload(path, CHECKPOINT_DIR)
            files = self._files_stored()
            replaced = files.get(epoch)
            files[epoch] = path.name
            if replaced is not None and replaced != path.name:
                # The same epoch trained again (after its stored file proved unusable): the old file goes.
                self._delete(replaced)
            self._prune(files)
            self.on_stored(epoch)
            path.unlink()
        except BaseException as error:  # noqa: BLE001 - handed to the trial's thread by wait()
            self._upload_error = error

    def _files_stored(self) -> dict[int, str]:
        if self._files is None:
            self._files = checkpoint_files(self.artifacts.names(CHECKPOINT_DIR))
        return self._files

    def epochs(self) -> list[int]:
        return sorted(self._files_stored())

    def latest(self) -> Optional[TrainingState]:
        """The newest checkpoint of the run that verifies; each newer corrupt one is skipped with a warning."""
        for epoch in reversed(self.epochs()):
            try:
                return self.load(epoch)
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint falls back to the previous
                warnings.warn(f"checkpoint {CHECKPOINT_DIR}/{self._files_stored()[epoch]} of run {self.run_id} is "
                              f"unusable ({error}); falling back to the previous one", stacklevel=2)
        return None

    def load(self, epoch: int) -> TrainingState:
        """The verified checkpoint of ``epoch``; raises if it is missing, corrupt or truncated."""
        name = self._files_stored().get(epoch)
        if name is None:
            raise ValueError(f"run {self.run_id} holds no checkpoint of epoch {epoch}")
        paths = [self.artifacts.download(artifact, self.scratch / "in") for artifact in checkpoint_artifacts(name)]
        return read_checkpoint(paths[0])

    def _prune(self, files: dict[int, str]) -> None:
        for epoch in sorted(files)[: -self.keep]:
            if epoch not in self.protected:
                self._delete(files.pop(epoch))

    def _delete(self, name: str) -> None:
        # The checkpoint before a sidecar: a sidecar without its checkpoint is simply ignored.
        for artifact in checkpoint_artifacts(name):
            self.artifacts.delete(artifact)
