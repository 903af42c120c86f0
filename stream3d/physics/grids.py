"""Reciprocal-space grids, band limits and propagators, cached by a hashable key.

Following abTEM, arrays that depend only on (shape, sampling, energy, dtype, device) are built
once and reused: the multislice slice loop never rebuilds them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from stream3d.optics import BAND_LIMIT_FRACTION, band_limit_cutoff, wavelength  # noqa: F401


def _freq(n: int, d: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # numpy.fft.fftfreq convention: cycles per Å.
    return torch.fft.fftfreq(n, d=d, dtype=dtype, device=device)


@lru_cache(maxsize=64)
def k_squared(
    shape: tuple[int, int], sampling: tuple[float, float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """|k|^2 (Å^-2) on the FFT grid of a (ny, nx) wave sampled at (dy, dx) Å. ``dtype`` is real."""
    ky = _freq(shape[0], sampling[0], dtype, device)
    kx = _freq(shape[1], sampling[1], dtype, device)
    return ky[:, None] ** 2 + kx[None, :] ** 2


@lru_cache(maxsize=64)
def band_limit(
    shape: tuple[int, int], sampling: tuple[float, float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """0/1 mask (real ``dtype``) of spatial frequencies kept by the 2/3-Nyquist band limit."""
    cutoff = band_limit_cutoff(sampling)
    return (k_squared(shape, sampling, dtype, device) <= cutoff**2).to(dtype)


@lru_cache(maxsize=64)
def propagator(
    shape: tuple[int, int],
    sampling: tuple[float, float, float],
    energy: float,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Band-limited Fresnel propagator exp(-i pi lambda dz |k|^2) for one slice of dz Å.

    ``sampling`` is (dz, dy, dx) Å; ``dtype`` is the complex dtype of the wave.
    """
    real = _real_dtype(dtype)
    dz, dy, dx = sampling
    k2 = k_squared(shape, (dy, dx), real, device)
    phase = -math.pi * wavelength(energy) * dz * k2
    return torch.polar(band_limit(shape, (dy, dx), real, device), phase).to(dtype)


def _real_dtype(complex_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if complex_dtype == torch.complex128 else torch.float32


def complex_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """complex128 for 64-bit inputs, complex64 otherwise (float32, float16, complex64)."""
    return torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64


def real_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """float64 for 64-bit inputs, float32 otherwise."""
    return _real_dtype(complex_dtype_for(dtype))
