"""Argument checks shared by the physics functions: one clear ValueError per mistake."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or a ValueError naming ``name`` if it is not finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def finite(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError if it is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def sampling3(sampling: Sequence[float]) -> tuple[float, float, float]:
    """(dz, dy, dx) in Å, each finite and > 0."""
    try:
        values = tuple(sampling)
    except TypeError:
        raise ValueError(f"sampling must be (dz, dy, dx) in Å, got {sampling!r}") from None
    if len(values) != 3:
        raise ValueError(f"sampling must have 3 entries (dz, dy, dx) in Å, got {len(values)}")
    dz, dy, dx = (positive(f"sampling[{i}]", v) for i, v in enumerate(values))
    return dz, dy, dx


def tensor(name: str, value: torch.Tensor, ndim: int) -> torch.Tensor:
    """``value`` if it is a torch tensor of rank ``ndim`` with only finite entries."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    # One reduction instead of an elementwise isfinite: the sum is NaN/inf iff an entry is.
    if not bool(torch.isfinite(value.detach().sum())):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value
