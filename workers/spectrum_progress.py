"""A spectrum's Lanczos progress kept in the trial's run, so that a retried or resumed job continues from it.

``spectrum/<protocol>/epoch_<n>.progress.pt`` holds the tridiagonal coefficients of every finished seed vector and,
every ``spectrum.progress_every`` steps, the current vector's coefficients with its basis when the basis is at most
``spectrum.progress_basis_mb`` (the basis is what continuing a vector needs; without it the vector starts over).
The file goes once the result is logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from workers.artifacts import spectrum_dir, spectrum_progress_name
from workers.curvature.lanczos import LanczosResult, LanczosState
from workers.curvature.slq import SLQState
from workers.run_artifacts import RunArtifacts
from workers.trial_config import SpectrumConfig

FORMAT = 1


class ArtifactProgress:
    """The Progress of one (epoch, protocol) result (workers.curvature.slq.Progress)."""

    def __init__(self, artifacts: RunArtifacts, protocol_id: str, epoch: int, scratch: Path,
                 spectrum: SpectrumConfig, faults: Optional[Mapping[str, Any]] = None) -> None:
        self.artifacts = artifacts
        self.directory = spectrum_dir(protocol_id)
        self.name = spectrum_progress_name(epoch)
        self.key = {"format": FORMAT, "protocol": protocol_id, "epoch": epoch}
        self.scratch = scratch / f"progress-{protocol_id}-{epoch}"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.every = max(1, spectrum.progress_every)
        self.enabled = spectrum.progress_every > 0
        self.basis_limit = spectrum.progress_basis_mb * 2**20
        # Test-only: the worker process exits (a real death, which Ray retries) after this many saves, unless it
        # resumed.
        self.exit_after = (faults or {}).get("exit_after_saves")
        # (finished vectors, steps of the current one) this attempt started from; None when it started afresh.
        self.resumed_from: Optional[tuple[int, int]] = None
        self._saves = 0
        self._stored = False
        self._last_completed = -1

    def load(self) -> Optional[SLQState]:
        if not self.enabled or self.name not in self.artifacts.names(self.directory):
            return None
        self._stored = True
        path = self.artifacts.download(f"{self.directory}/{self.name}", self.scratch / "in")
        payload = torch.load(path, weights_only=True, map_location="cpu")
        if {k: payload.get(k) for k in self.key} != self.key:
            return None
        completed = tuple(LanczosResult(alphas, betas) for alphas, betas in payload["completed"])
        partial = payload["partial"]
        state = SLQState(completed, None if partial is None else LanczosState(
            tuple(partial["alphas"].tolist()), tuple(partial["betas"].tolist()), partial["basis"], partial["scale"]))
        self.resumed_from = (len(completed), 0 if state.partial is None else state.partial.steps_taken)
        self._last_completed = len(completed)
        return state

    def save(self, state: SLQState) -> None:
        if not self.enabled:
            return
        partial = state.partial
        if partial is not None and partial.basis.numel() * partial.basis.element_size() > self.basis_limit:
            partial = None
        if partial is None and len(state.completed) == self._last_completed:
            return  # nothing that a later attempt could use beyond what is stored already
        payload = {**self.key,
                   "completed": [(run.alphas, run.betas) for run in state.completed],
                   "partial": None if partial is None else {
                       "alphas": torch.tensor(partial.alphas, dtype=torch.float64),
                       "betas": torch.tensor(partial.betas, dtype=torch.float64),
                       # A copy: saving a view of the basis would write all of its storage.
                       "basis": partial.basis.detach().cpu().clone(), "scale": partial.scale}}
        path = self.scratch / self.name
        torch.save(payload, path)
        self.artifacts.upload(path, self.directory)
        self._stored = True
        self._last_completed = len(state.completed)
        self._saves += 1
        if self.exit_after is not None and self.resumed_from is None and self._saves >= self.exit_after:
            os._exit(1)

    def clear(self) -> None:
        """Drop the file once the result it led to is logged."""
        if self._stored:
            self.artifacts.delete(f"{self.directory}/{self.name}")
            self._stored = False

    def describe(self) -> Optional[dict[str, int]]:
        if self.resumed_from is None:
            return None
        return {"vectors_done": self.resumed_from[0], "steps_done": self.resumed_from[1]}
