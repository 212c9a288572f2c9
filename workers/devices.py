"""The torch device a config names; "auto" picks cuda when torch sees one."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but torch sees no CUDA device; use device='auto' or 'cpu'")
    return torch.device(name)
