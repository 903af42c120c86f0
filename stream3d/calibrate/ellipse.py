"""Astigmatic Thon rings mapped onto circles, so spectra can be averaged along the rings.

Along a direction phi the effective defocus is defocus - C12 cos 2(phi - phi12), so the rings are
ellipses. :func:`effective_k2` gives, for every 2D frequency, the isotropic |k|^2 whose phase
chi (at the given defocus, no astigmatism) equals the astigmatic chi there; binning a spectrum by
it (:func:`elliptical_average`) averages along the rings instead of across them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stream3d.optics import astigmatic_chi, wavelength


def effective_k2(shape: Sequence[int], sampling: Sequence[float], *, energy: float,
                 defocus: float, cs: float = 0.0, astigmatism: float = 0.0,
                 astigmatism_angle: float = 0.0, rfft: bool = False) -> np.ndarray:
    """Isotropic |k|^2 (Å^-2) whose chi matches the astigmatic chi, on an FFT grid (float64).

    ``shape`` (ny, nx) and ``sampling`` (dy, dx) Å of the spectrum's real-space frame, numpy
    fftfreq order (``rfft=True``: the rfft2 half plane (ny, nx // 2 + 1)); ``energy`` eV;
    ``defocus`` Å (> 0, underfocus); ``cs`` Å; ``astigmatism`` C12 Å (< defocus) at
    ``astigmatism_angle`` phi12 degrees from +x toward +y.

    Solves chi(u; defocus, cs) = chi_astig(k) for u = |k_eff|^2 on the branch continuous with
    u = k^2 (defocus - C12 cos 2(phi - phi12)) / defocus, which it is exactly when cs = 0. Past
    the minimum of the isotropic chi (beyond Scherzer's band, large k with Cs) no u matches and
    the vertex is returned. Exact at ``defocus``; for material at another effective defocus D'
    the rings are matched up to a residual astigmatic phase of fraction |defocus - D'| / defocus.
    """
    ny, nx = (int(v) for v in shape)
    dy, dx = (float(v) for v in sampling)
    if not defocus > 0:
        raise ValueError(f"effective_k2 needs underfocus (defocus > 0 Å), got {defocus!r}")
    if not 0 <= astigmatism < defocus:
        raise ValueError(f"astigmatism must be in [0, defocus) Å, got {astigmatism!r}")
    ky = np.fft.fftfreq(ny, d=dy)[:, None]
    kx = (np.fft.rfftfreq(nx, d=dx) if rfft else np.fft.fftfreq(nx, d=dx))[None, :]
    phase = astigmatic_chi(ky, kx, energy=energy, defocus=defocus, cs=cs,
                           astigmatism=astigmatism, astigmatism_angle=astigmatism_angle)
    lam = wavelength(energy)
    b = math.pi * lam * defocus
    # Small root of (pi/2) Cs lam^3 u^2 - b u - chi = 0, in the form stable as Cs -> 0.
    disc = b * b + 2.0 * math.pi * cs * lam**3 * phase
    u = -2.0 * phase / (b + np.sqrt(np.maximum(disc, 0.0)))
    if cs > 0:
        u = np.where(disc < 0, defocus / (cs * lam**2), u)  # the vertex of chi(u)
    return np.maximum(u, 0.0)


def elliptical_average(power: np.ndarray, k2_eff: np.ndarray, edges: np.ndarray,
                       mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean of ``power`` in each |k_eff| bin, pixel count per bin).

    ``edges`` are bin edges in |k| Å^-1 (ascending); ``k2_eff`` from :func:`effective_k2` on the
    grid of ``power``; ``mask`` (bool, same shape) keeps only some pixels. Empty bins are NaN.
    """
    k = np.sqrt(k2_eff).ravel()
    values = np.asarray(power, dtype=np.float64).ravel()
    keep = np.ones(k.size, bool) if mask is None else np.asarray(mask, bool).ravel()
    index = np.searchsorted(edges, k, side="right") - 1
    keep &= (index >= 0) & (index < edges.size - 1)
    counts = np.bincount(index[keep], minlength=edges.size - 1).astype(np.float64)
    sums = np.bincount(index[keep], weights=values[keep], minlength=edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), counts
