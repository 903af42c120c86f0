"""Objective lens: aberration phase chi(k), hard aperture, temporal-coherence envelope."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from stream3d import optics
from stream3d.optics import astigmatic_chi, chi, wavelength
from stream3d.physics import checks
from stream3d.physics.grids import complex_dtype_for, k_squared, real_dtype_for


def aperture_mask(k2: torch.Tensor, *, energy: float, aperture: float | None) -> torch.Tensor:
    """Hard objective aperture: 1 where the scattering angle lambda |k| <= ``aperture`` mrad.

    ``aperture`` None, 0 or inf means no aperture (every frequency passes).
    """
    if aperture is None or aperture == 0 or math.isinf(aperture):
        return torch.ones_like(k2)
    kmax = aperture * 1e-3 / wavelength(energy)
    return (k2 <= kmax**2).to(k2.dtype)


def temporal_envelope(k2: torch.Tensor, *, energy: float, focal_spread: float) -> torch.Tensor:
    """Temporal-coherence envelope exp(-(pi lambda Delta k^2)^2 / 4) on a torch grid (formula:
    :func:`stream3d.optics.temporal_envelope`).

    ``focal_spread`` Delta (Å) is the 1/e half-width of a Gaussian spread of defocus.
    """
    if focal_spread == 0:
        return torch.ones_like(k2)
    return optics.temporal_envelope(k2, energy=energy, focal_spread=focal_spread)


@lru_cache(maxsize=64)
def transfer_function(
    shape: tuple[int, int],
    sampling: tuple[float, float],
    energy: float,
    defocus: float,
    cs: float,
    aperture: float | None,
    focal_spread: float,
    dtype: torch.dtype,
    device: torch.device,
    astigmatism: float = 0.0,
    astigmatism_angle: float = 0.0,
) -> torch.Tensor:
    """Coherent transfer function A(k) exp(-i chi(k)) E(k) on the FFT grid (complex ``dtype``).

    Cached by every argument (astigmatism Å and its angle in degrees included), so the lens of a
    movie is built once.
    """
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    k2 = k_squared(shape, sampling, real, device)
    magnitude = aperture_mask(k2, energy=energy, aperture=aperture) * temporal_envelope(
        k2, energy=energy, focal_spread=focal_spread
    )
    if astigmatism == 0:
        phase = chi(k2, energy=energy, defocus=defocus, cs=cs)
    else:
        ky = torch.fft.fftfreq(shape[0], d=sampling[0], dtype=real, device=device)[:, None]
        kx = torch.fft.fftfreq(shape[1], d=sampling[1], dtype=real, device=device)[None, :]
        phase = astigmatic_chi(ky, kx, energy=energy, defocus=defocus, cs=cs,
                               astigmatism=astigmatism, astigmatism_angle=astigmatism_angle)
    return torch.polar(magnitude, -phase).to(dtype)


def image_wave(
    exit_wave: torch.Tensor,
    *,
    sampling: Sequence[float],
    energy: float,
    defocus: float,
    cs: float,
    aperture: float | None,
    focal_spread: float = 0.0,
    astigmatism: float = 0.0,
    astigmatism_angle: float = 0.0,
) -> torch.Tensor:
    """Complex image wave IFFT(FFT(psi_exit) A exp(-i chi) E); arguments as in :func:`image`."""
    checks.tensor("exit_wave", exit_wave, 2)
    dy, dx = _lateral(sampling)
    energy = checks.positive("energy", energy)
    defocus = checks.finite("defocus", defocus)
    cs = checks.finite("cs", cs)
    if aperture is not None and not math.isinf(float(aperture)):
        aperture = checks.positive("aperture", aperture, allow_zero=True)
    focal_spread = checks.positive("focal_spread", focal_spread, allow_zero=True)
    astigmatism = checks.positive("astigmatism", astigmatism, allow_zero=True)
    astigmatism_angle = checks.finite("astigmatism_angle", astigmatism_angle)
    cdtype = complex_dtype_for(exit_wave.dtype)
    h = transfer_function(
        tuple(exit_wave.shape), (dy, dx), energy, defocus, cs, aperture, focal_spread, cdtype,
        exit_wave.device, astigmatism, astigmatism_angle,
    )
    return torch.fft.ifft2(torch.fft.fft2(exit_wave.to(cdtype)) * h)


def image(
    exit_wave: torch.Tensor,
    *,
    sampling: Sequence[float],
    energy: float,
    defocus: float,
    cs: float,
    aperture: float | None,
    focal_spread: float = 0.0,
    astigmatism: float = 0.0,
    astigmatism_angle: float = 0.0,
) -> torch.Tensor:
    """Image intensity [ny, nx] of ``exit_wave`` through the objective lens (vacuum = 1).

    ``sampling`` is (dz, dy, dx) or (dy, dx) in Å (only dy, dx are used); ``energy`` eV;
    ``defocus`` Å from the exit plane, > 0 underfocus; ``cs`` Å; ``aperture`` mrad (None/0/inf:
    none); ``focal_spread`` Å, 1/e half-width; ``astigmatism`` C12 Å (>= 0) at
    ``astigmatism_angle`` phi12 degrees from +x (axis 1) toward +y (axis 0), the least
    underfocused direction (see :func:`astigmatic_chi`). Real dtype matches the wave's precision.
    """
    wave = image_wave(exit_wave, sampling=sampling, energy=energy, defocus=defocus, cs=cs,
                      aperture=aperture, focal_spread=focal_spread, astigmatism=astigmatism,
                      astigmatism_angle=astigmatism_angle)
    out = wave.real**2 + wave.imag**2
    return out.to(real_dtype_for(exit_wave.dtype))


def _lateral(sampling: Sequence[float]) -> tuple[float, float]:
    try:
        values = tuple(sampling)
    except TypeError:
        raise ValueError(f"sampling must be (dz, dy, dx) or (dy, dx) in Å, got {sampling!r}") from None
    if len(values) not in (2, 3):
        raise ValueError(f"sampling must be (dz, dy, dx) or (dy, dx) in Å, got {len(values)} entries")
    if len(values) == 3:
        checks.sampling3(values)
    dy, dx = (checks.positive(f"sampling[{i}]", v) for i, v in enumerate(values[-2:]))
    return dy, dx
