"""Amorphous texture and occupancy -> potential: what makes Thon rings in the image."""

from __future__ import annotations

import numpy as np
import scipy.fft

from stream3d.config import Sample


def amorphous_texture(
    shape: tuple[int, int, int],
    sampling: tuple[float, float, float],
    *,
    length: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gaussian random field of unit rms and correlation length ``length`` (Å), float32.

    White noise low-pass filtered by exp(-(pi length k)^2 / 2) along each axis (k in Å^-1),
    sampled at ``sampling`` = (dz, dy, dx) Å, periodic like the multislice grid.
    """
    # Memory: float32 noise drawn slice by slice (the same numbers as one float64 draw) and a
    # real-to-complex FFT in complex64 keep the peak near 3x the field (1.5 GB at 1024²x128).
    field = np.empty(shape, dtype=np.float32)
    for plane in field:
        plane[...] = rng.standard_normal(plane.shape)
    spectrum = scipy.fft.rfftn(field, overwrite_x=True)
    for axis, (n, d) in enumerate(zip(shape, sampling)):
        k = np.fft.rfftfreq(n, d=d) if axis == len(shape) - 1 else np.fft.fftfreq(n, d=d)
        shape_k = [1] * len(shape)
        shape_k[axis] = k.size
        spectrum *= np.exp(-((np.pi * length * k) ** 2) / 2).astype(np.float32).reshape(shape_k)
    field = scipy.fft.irfftn(spectrum, s=shape, overwrite_x=True).astype(np.float32, copy=False)
    del spectrum
    field -= np.float32(np.mean(field, dtype=np.float64))
    # Sum of squares plane by plane in float64: no full-size float64 temporary.
    rms = float(np.sqrt(sum(float(np.dot(p.ravel(), p.ravel())) for p in field) / field.size))
    if rms > 0:
        field /= np.float32(rms)
    return field


def occupancy_to_potential(
    occupancy: np.ndarray, sample: Sample, *, rng: np.random.Generator | None = None,
    field: np.ndarray | None = None,
) -> np.ndarray:
    """Complex64 potential (V, relative to solvent) of an occupancy map in [0, 1], (z, y, x).

    V = potential * occupancy * (1 + texture * field) * (1 + i * absorption), with ``field`` an
    amorphous texture of correlation length ``sample.texture_length``: drawn from ``rng``, or
    given (e.g. one field for all frames of a movie, so grown material keeps its texture).
    """
    occupancy = np.asarray(occupancy, dtype=np.float32)
    if occupancy.ndim != 3:
        raise ValueError(f"occupancy must be (z, y, x), got shape {occupancy.shape}")
    # In place, float32/complex64 throughout: temporaries stay at one field's size (0.5 GB at
    # 1024²x128) instead of complex128 copies.
    real = occupancy * np.float32(sample.potential)
    if sample.texture > 0:
        if field is None:
            if rng is None:
                raise ValueError("occupancy_to_potential needs rng or field for the texture")
            field = amorphous_texture(occupancy.shape, sample.sampling,
                                      length=sample.texture_length, rng=rng)
        elif field.shape != occupancy.shape:
            raise ValueError(f"texture field shape {field.shape} != occupancy shape "
                             f"{occupancy.shape}")
        modulation = field * np.float32(sample.texture)
        modulation += 1.0
        real *= modulation
        del modulation
    potential = np.empty(occupancy.shape, dtype=np.complex64)
    potential.real = real
    np.multiply(real, np.float32(sample.absorption), out=potential.imag)
    return potential
