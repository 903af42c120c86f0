"""Amorphous texture and occupancy -> potential: what makes Thon rings in the image.

The texture's power spectrum is the simulator's business alone (pop-out and refinement measure
it from the frames; a real specimen's is never known). Three families of isotropic 3D power
spectra P(k), k = |k| in Å^-1, l = the texture length (Å):

- ``gaussian``: exp(-(pi l k)^2), autocorrelation exp(-(r / l)^2);
- ``powerlaw``: (1 + (2 pi l k)^2)^-1.5, an exponential autocorrelation exp(-r / l): power
  falls slowly, as a power law, instead of a Gaussian's cliff;
- ``peaked``: (k / kp)^2 exp(-((k - kp) / w)^2 / 2) with kp = 0.7 / l and w = kp / 2: a
  structure-factor-like spectrum with little power at low k and a maximum near the
  nearest-neighbour spacing (real amorphous solids; rising, not falling, across the band).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from stream3d.config import Sample


#: The texture spectrum families (see the module docstring).
SPECTRA = ("gaussian", "powerlaw", "peaked")


def texture_power(k: np.ndarray, *, length: float, spectrum: str = "gaussian") -> np.ndarray:
    """Unnormalised power P(k) of the texture family ``spectrum`` at |k| = ``k`` Å^-1."""
    k = np.asarray(k, dtype=np.float64)
    if spectrum == "gaussian":
        return np.exp(-((np.pi * length * k) ** 2))
    if spectrum == "powerlaw":
        return (1.0 + (2.0 * np.pi * length * k) ** 2) ** -1.5
    if spectrum == "peaked":
        kp = 0.7 / length
        return (k / kp) ** 2 * np.exp(-(((k - kp) / (kp / 2.0)) ** 2) / 2.0)
    raise ValueError(f"unknown texture spectrum {spectrum!r}: one of {', '.join(SPECTRA)}")


def amorphous_texture(
    shape: tuple[int, int, int],
    sampling: tuple[float, float, float],
    *,
    length: float,
    rng: np.random.Generator,
    spectrum: str = "gaussian",
) -> np.ndarray:
    """Random field of unit rms whose power spectrum is :func:`texture_power` (``spectrum``
    family, length ``length`` Å), float32, sampled at ``sampling`` = (dz, dy, dx) Å, periodic
    like the multislice grid.

    White noise filtered by sqrt(P(|k|)) (k in Å^-1); the Gaussian filter is separable,
    exp(-(pi length k_i)^2 / 2) along each axis.
    """
    spectrum_name = spectrum
    texture_power(np.zeros(1), length=length, spectrum=spectrum_name)  # unknown names fail first
    # Memory: float32 noise drawn slice by slice (the same numbers as one float64 draw) and a
    # real-to-complex FFT in complex64 keep the peak near 3x the field (1.5 GB at 1024²x128).
    field = np.empty(shape, dtype=np.float32)
    for plane in field:
        plane[...] = rng.standard_normal(plane.shape)
    spectrum = scipy.fft.rfftn(field, overwrite_x=True)
    if spectrum_name == "gaussian":
        for axis, (n, d) in enumerate(zip(shape, sampling)):
            k = np.fft.rfftfreq(n, d=d) if axis == len(shape) - 1 else np.fft.fftfreq(n, d=d)
            shape_k = [1] * len(shape)
            shape_k[axis] = k.size
            spectrum *= np.exp(-((np.pi * length * k) ** 2) / 2).astype(np.float32).reshape(shape_k)
    else:
        # Not separable: |k| plane by plane (no full-size frequency array).
        kz = np.fft.fftfreq(shape[0], d=sampling[0])
        ky = np.fft.fftfreq(shape[1], d=sampling[1])[:, None]
        kx = np.fft.rfftfreq(shape[2], d=sampling[2])[None, :]
        for plane, k_z in zip(spectrum, kz):
            k = np.sqrt(k_z**2 + ky**2 + kx**2)
            plane *= np.sqrt(texture_power(k, length=length, spectrum=spectrum_name)).astype(np.float32)
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
    amorphous texture of length ``sample.texture_length`` and family ``sample.texture_spectrum``: drawn from ``rng``, or
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
                                      length=sample.texture_length, rng=rng,
                                      spectrum=sample.texture_spectrum)
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
