"""Patch power spectra and their radial (rotational) averages over the fitted band."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse

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

    ``select`` flags the half-plane pixels used; ``average`` (bins, all half-plane pixels), a
    sparse matrix, turns a flattened spectrum into per-bin means (a sparse product is
    single-threaded and skips the pixels outside the band, so it beats a gather + BLAS
    product inside dask threads); ``k`` is each bin's rms frequency (Å^-1); ``counts`` pixels
    per bin.
    """

    patch: int
    pixel_size: float
    select: np.ndarray
    average: scipy.sparse.csr_matrix
    k: np.ndarray
    counts: np.ndarray

    @property
    def size(self) -> int:
        return len(self.k)


@lru_cache(maxsize=16)
def radial_bins(patch: int, pixel_size: float, k_low: float, k_high: float,
                ellipse: tuple[float, float, float, float, float] | None = None) -> RadialBins:
    """The radial bins of a ``patch`` px spectrum at ``pixel_size`` Å between k_low and k_high.

    ``ellipse`` = (energy eV, defocus Å, Cs Å, C12 Å, phi12 degrees) of an astigmatic lens: the
    bins then follow its elliptical Thon rings (each frequency at the isotropic |k| whose chi
    matches at that defocus, :func:`stream3d.calibrate.effective_k2`), not circles.
    """
    if ellipse is None:
        k = frequency_grid(patch, pixel_size)
    else:
        from stream3d.calibrate.ellipse import effective_k2

        energy, defocus, cs, c12, phi12 = ellipse
        k = np.sqrt(effective_k2((patch, patch), (pixel_size, pixel_size), energy=energy,
                                 defocus=defocus, cs=cs, astigmatism=c12,
                                 astigmatism_angle=phi12, rfft=True))
    select = (k >= k_low) & (k <= k_high)
    index = np.floor(k[select] * patch * pixel_size * BINS_PER_PIXEL).astype(int)
    _, inverse = np.unique(index, return_inverse=True)
    counts = np.bincount(inverse)
    columns = np.flatnonzero(select.ravel())
    average = scipy.sparse.csr_matrix((1.0 / counts[inverse], (inverse, columns)),
                                      shape=(len(counts), select.size))
    k_rms = np.sqrt(average @ (k.ravel() ** 2))
    for a in (select, k_rms, counts):
        a.setflags(write=False)
    return RadialBins(patch, pixel_size, select, average, k_rms, counts)


def radial_profiles(patches: np.ndarray, bins: RadialBins) -> np.ndarray:
    """Radially averaged power spectra (n, bins) of windowed patches (n, patch, patch)."""
    spectra = scipy.fft.rfft2(patches, workers=1)
    # |F|^2 in place on the (re, im) pairs: no full-size temporaries.
    pairs = spectra.view(spectra.real.dtype).reshape(len(spectra), -1, 2)
    np.square(pairs, out=pairs)
    power = pairs[..., 0]
    power += pairs[..., 1]
    return np.asarray(bins.average @ power.T, dtype=np.float64).T
