"""Choosing the torch device from the config: never assume cuda, never assume cpu."""

from __future__ import annotations

import torch

from stream3d.errors import UserError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else must name a usable device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"refine.device {name!r} is not a torch device (try auto, cpu, cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"refine.device {name!r}: this machine has no CUDA device (use auto or cpu)")
    return device
