"""Patch power spectra and their radial (rotational) averages over the fitted band."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

#: Radial bins per Fourier pixel (1 / (patch x pixel_size)): finer than the pixel so that the
#: narrow high-frequency rings are not averaged away; each bin still holds several pixels.
BINS_PER_PIXEL = 2


def frequency_grid(patch: int, pixel_size: float) -> np.ndarray:
    """|k| (Å^-1) on the half-plane grid (patch, patch // 2 + 1) of a real FFT."""
    ky = np.fft.fftfreq(patch, d=pixel_size)
    kx = np.fft.rfftfreq(patch, d=pixel_size)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


@dataclass(frozen=True)
class RadialBins:
    """Annuli of the real-FFT half-plane within [k_low, k_high] Å^-1.

    ``select`` flags the half-plane pixels used; ``average`` (pixels, bins) turns their values
    into per-bin means; ``k`` is each bin's rms frequency (Å^-1); ``counts`` pixels per bin.
    """

    patch: int
    pixel_size: float
    select: np.ndarray
    average: np.ndarray
    k: np.ndarray
    counts: np.ndarray

    @property
    def size(self) -> int:
        return len(self.k)


@lru_cache(maxsize=16)
def radial_bins(patch: int, pixel_size: float, k_low: float, k_high: float) -> RadialBins:
    """The radial bins of a ``patch`` px spectrum at ``pixel_size`` Å between k_low and k_high."""
    k = frequency_grid(patch, pixel_size)
    select = (k >= k_low) & (k <= k_high)
    index = np.floor(k[select] * patch * pixel_size * BINS_PER_PIXEL).astype(int)
    _, inverse = np.unique(index, return_inverse=True)
    counts = np.bincount(inverse)
    average = np.zeros((int(select.sum()), len(counts)))
    average[np.arange(len(inverse)), inverse] = 1.0 / counts[inverse]
    k_rms = np.sqrt(average.T @ k[select] ** 2)
    for a in (select, average, k_rms, counts):
        a.setflags(write=False)
    return RadialBins(patch, pixel_size, select, average, k_rms, counts)


def radial_profiles(patches: np.ndarray, bins: RadialBins) -> np.ndarray:
    """Radially averaged power spectra (n, bins) of windowed patches (n, patch, patch)."""
    spectra = scipy.fft.rfft2(patches, workers=1)
    power = spectra.real**2 + spectra.imag**2
    return power[:, bins.select] @ bins.average
