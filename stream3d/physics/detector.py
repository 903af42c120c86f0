"""Detector model: image intensity -> the camera's transfer (MTF) -> raw electron counts at a dose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


# ----------------------------------------------------------------------------- transfer (MTF)
@dataclass(frozen=True)
class MTF:
    """A camera's modulation transfer function, of spatial frequency in units of Nyquist
    (0.5 cycles per detector pixel). Plain numbers, no I/O (:mod:`stream3d.mtf` builds one
    from the config, reading a measured curve).

    * ``"none"``: 1 everywhere (a perfect detector).
    * ``"counting"``: the square pixel's aperture, sinc(fy/2)·sinc(fx/2) with f in units of
      Nyquist (np.sinc(u) = sin(pi u)/(pi u), u in cycles/px): 2/pi = 0.637 at Nyquist on
      either axis. An electron-counting camera whose event localisation is exact.
    * ``"scintillator"``: 1 / (1 + (f / half)²), f = |f| in units of Nyquist, 0.5 at ``half``:
      the single-Lorentzian term of the parametric MTF that Ruskin, Yu & Grigorieff fitted to
      scintillator-coupled cameras (J. Struct. Biol. 184, 385 (2013)); the light spread of the
      scintillator dominates the pixel's own sinc there.
    * ``"table"``: linear interpolation of ``table`` = ((f / Nyquist, MTF), ...) in |f|,
      held at its last value beyond its last frequency.
    """

    kind: str = "none"
    half: float = 0.25  # frequency / Nyquist where the scintillator curve is 0.5
    table: tuple[tuple[float, float], ...] = ()

    @property
    def perfect(self) -> bool:
        return self.kind == "none"

    def radial(self, f: np.ndarray) -> np.ndarray:
        """MTF of the isotropic models at |f| (units of Nyquist); ``counting`` along one axis."""
        f = np.abs(np.asarray(f, dtype=np.float64))
        if self.kind == "scintillator":
            return 1.0 / (1.0 + (f / self.half) ** 2)
        if self.kind == "counting":
            return np.sinc(f / 2.0)
        if self.kind == "table":
            freq, value = np.asarray(self.table, dtype=np.float64).T
            return np.interp(f, freq, value)
        return np.ones_like(f)

    def array(self, shape: tuple[int, int]) -> np.ndarray:
        """The MTF on the FFT grid of a (ny, nx) image (numpy FFT layout), float64."""
        ny, nx = shape
        fy = np.fft.fftfreq(ny)[:, None] * 2.0  # units of Nyquist
        fx = np.fft.fftfreq(nx)[None, :] * 2.0
        if self.kind == "counting":
            return self.radial(fy) * self.radial(fx)
        return self.radial(np.hypot(fy, fx))

    def grid(self, shape: tuple[int, int], *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """:meth:`array` as a tensor."""
        return torch.as_tensor(self.array(shape), dtype=dtype, device=device)


def apply_mtf(intensity: torch.Tensor, mtf: MTF) -> torch.Tensor:
    """The camera's image of ``intensity`` (y, x): its Fourier transform multiplied by the MTF
    (the zero frequency is passed whole, so the mean and the dose stay); differentiable, same
    dtype and device. A perfect detector returns ``intensity`` itself."""
    if mtf.perfect:
        return intensity
    real = intensity.real.dtype if intensity.is_complex() else intensity.dtype
    transfer = mtf.grid(tuple(intensity.shape[-2:]), device=intensity.device, dtype=real)
    return torch.fft.ifft2(torch.fft.fft2(intensity) * transfer).real
