"""Detector model: image intensity -> raw electron counts at a dose."""

from __future__ import annotations

import torch

from stream3d.physics import checks


def expected_counts(intensity: torch.Tensor, *, dose: float, pixel_size: float) -> torch.Tensor:
    """Mean counts per pixel: intensity x dose (e/Å²) x pixel area (Å²). Vacuum -> dose·px²."""
    dose = checks.positive("dose", dose)
    pixel_size = checks.positive("pixel_size", pixel_size)
    return intensity * (dose * pixel_size**2)


def detect(
    intensity: torch.Tensor,
    *,
    dose: float,
    pixel_size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Poisson-distributed raw counts (float, same dtype/device as ``intensity``).

    ``dose`` in e/Å² per frame, ``pixel_size`` in Å. ``generator`` makes the noise reproducible;
    it must live on the same device as ``intensity``.
    """
    checks.tensor("intensity", intensity, intensity.ndim if isinstance(intensity, torch.Tensor) else 2)
    if bool((intensity < 0).any()):
        raise ValueError("intensity must be >= 0 everywhere")
    rate = expected_counts(intensity.detach(), dose=dose, pixel_size=pixel_size)
    return torch.poisson(rate, generator=generator)
