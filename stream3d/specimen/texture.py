"""Amorphous texture and occupancy -> potential: what makes Thon rings in the image."""

from __future__ import annotations

import numpy as np

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
    noise = rng.standard_normal(shape)
    spectrum = np.fft.fftn(noise)
    for axis, (n, d) in enumerate(zip(shape, sampling)):
        k = np.fft.fftfreq(n, d=d)
        shape_k = [1, 1, 1]
        shape_k[axis] = n
        spectrum *= np.exp(-((np.pi * length * k) ** 2) / 2).reshape(shape_k)
    field = np.fft.ifftn(spectrum).real
    field -= field.mean()
    rms = field.std()
    return (field / rms if rms > 0 else field).astype(np.float32)


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
    real = sample.potential * occupancy
    if sample.texture > 0:
        if field is None:
            if rng is None:
                raise ValueError("occupancy_to_potential needs rng or field for the texture")
            field = amorphous_texture(occupancy.shape, sample.sampling,
                                      length=sample.texture_length, rng=rng)
        elif field.shape != occupancy.shape:
            raise ValueError(f"texture field shape {field.shape} != occupancy shape "
                             f"{occupancy.shape}")
        real = real * (1.0 + sample.texture * field)
    # complex64 arithmetic throughout: a complex128 temporary would be 2 GB at 1024²x128.
    return real.astype(np.complex64) * np.complex64(1.0 + 1j * sample.absorption)
