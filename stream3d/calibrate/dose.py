"""Dose from the counts: mean counts = dose x pixel area where the beam crosses no material.

Material absorbs (its potential has an imaginary part) and scatters outside the aperture, so it
darkens the mean; the brightest blocks of a frame are the nearest to bare solvent or vacuum. A
second, gain-free estimate comes from the shot noise: for Poisson electrons the normalised
contrast I / <I> - 1 has a white noise floor of 1 / (electrons per pixel), read where the lens
passes no signal (beyond the objective aperture or the band limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream3d.calibrate.spectrum import Spectrum


@dataclass(frozen=True)
class DoseEstimate:
    """Dose in e/Å² per frame."""

    dose: float  # from the brightest blocks' mean counts (1 count per electron, as docs/architecture.md)
    frame_mean_dose: float  # from the mean counts of the whole frame(s)
    dose_from_noise: float | None  # from the shot-noise floor (None: no signal-free band)
    counts_per_electron: float | None  # frame mean counts / electrons from the noise floor


def bright_mean(frame: np.ndarray, *, block: int = 32, quantile: float = 0.9) -> float:
    """Mean counts of the ``quantile`` brightest ``block`` x ``block`` px block (the median of
    the top decile by default, robust to a hot block)."""
    data = np.asarray(frame, dtype=np.float64)
    ny, nx = data.shape[0] // block, data.shape[1] // block
    if ny == 0 or nx == 0:
        return float(data.mean())
    means = data[:ny * block, :nx * block].reshape(ny, block, nx, block).mean(axis=(1, 3))
    return float(np.quantile(means, quantile))


def noise_floor(spectrum: Spectrum, k_signal: float) -> float | None:
    """Mean normalised power (per pixel) of the frequencies above ``k_signal`` Å^-1: the
    shot-noise floor 1 / (electrons per pixel). None if there are too few such frequencies."""
    ky, kx = spectrum.frequencies()
    k = np.sqrt(ky**2 + kx**2)
    outer = k > k_signal * 1.05
    if outer.sum() < 50:
        return None
    return float(np.mean(spectrum.power[outer]))


def estimate_dose(frames: list[np.ndarray], spectrum: Spectrum, *, pixel_size: float,
                  k_signal: float) -> DoseEstimate:
    """Dose (e/Å²) of ``frames`` (raw counts) at ``pixel_size`` Å; ``k_signal`` Å^-1 is the
    highest frequency the lens passes (the noise floor is read beyond it)."""
    area = pixel_size**2
    bright = float(np.mean([bright_mean(f) for f in frames]))
    mean = float(np.mean([np.mean(f, dtype=np.float64) for f in frames]))
    floor = noise_floor(spectrum, k_signal)
    from_noise = per_electron = None
    if floor is not None and floor > 0:
        electrons = 1.0 / floor  # per pixel
        from_noise = electrons / area
        per_electron = mean / electrons
    return DoseEstimate(bright / area, mean / area, from_noise, per_electron)
