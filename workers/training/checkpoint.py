"""Checkpoints a trial can resume from bit for bit, on any node.

A checkpoint holds the model, the recipe (optimizer, averaging), the epoch and step, and every RNG state the
trial draws from; with iterate averaging also the averaged model (weights and the BatchNorm statistics recomputed
for them), the network the trial evaluates and a spectrum job can take the Hessian of. It is written atomically
(temp file + rename) under a name that carries its SHA-256 (workers/artifacts.py), and only tensors and plain values
go in, so ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from workers.artifacts import CHECKSUM_SUFFIX, checkpoint_name, parse_checkpoint_name

@dataclass(frozen=True)
class TrainingState:
    """What a checkpoint restores: completed epochs, optimizer steps taken, and the state dicts."""

    epoch: int
    step: int
    model: dict[str, Any]
    recipe: dict[str, Any]
    rng: dict[str, Any]
    # The averaged model's state_dict; None without averaging, before it starts, and in older checkpoints.
    averaged: Optional[dict[str, Any]] = None


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": generator.get_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def restore_rng(rng: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    generator.set_state(rng["batches"])
    np_rng = rng["numpy"]
    np.random.set_state(("MT19937", np_rng["keys"].numpy().astype(np.uint32), np_rng["pos"], np_rng["has_gauss"],
                         np_rng["cached_gaussian"]))
    py_rng = rng["python"]
    random.setstate((py_rng["version"], tuple(py_rng["state"]), py_rng["gauss"]))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checkpoint(state: TrainingState, directory: Path) -> Path:
    """Write ``state`` atomically into ``directory``; returns its path, named by its epoch and digest."""
    return seal_checkpoint(write_unsealed(state, directory))


def write_unsealed(state: TrainingState, directory: Path) -> Path:
    """The part of writing that must happen now (the state's tensors are the live model's): a temporary file that
    no reader takes for a checkpoint until :func:`seal_checkpoint` names it."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{checkpoint_name(state.epoch)}.tmp"
    torch.save({"epoch": state.epoch, "step": state.step, "model": state.model, "recipe": state.recipe,
                "rng": state.rng, "averaged": state.averaged}, tmp)
    return tmp


def seal_checkpoint(tmp: Path) -> Path:
    """Name an unsealed checkpoint by its digest (an atomic rename); returns the checkpoint's path."""
    parsed = parse_checkpoint_name(tmp.name.removesuffix(".tmp"))
    assert parsed is not None, tmp
    path = tmp.with_name(checkpoint_name(parsed[0], sha256_of(tmp)))
    os.replace(tmp, path)
    return path


def read_checkpoint(path: Path) -> TrainingState:
    """Load and verify one checkpoint; raises ValueError if it is corrupt or truncated (or, in the sidecar layout,
    missing its checksum file)."""
    parsed = parse_checkpoint_name(path.name)
    if parsed is None:
        raise ValueError(f"{path.name} is not a checkpoint file name")
    expected = parsed[1]
    if expected is None:
        sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
        if not sidecar.exists():
            raise ValueError(f"checkpoint {path.name} has no checksum file")
        expected = json.loads(sidecar.read_text())["sha256"]
    if sha256_of(path) != expected:
        raise ValueError(f"checkpoint {path.name} does not match its checksum (corrupt or truncated)")
    payload = torch.load(path, weights_only=True, map_location="cpu")
    return TrainingState(payload["epoch"], payload["step"], payload["model"], payload["recipe"], payload["rng"],
                         payload.get("averaged"))
