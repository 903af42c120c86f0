"""Material thickness from the frame's low-frequency contrast: absorption plus phase contrast.

The mean (untextured) potential of material of thickness t(x) is a weak object with phase
sigma V0 t and amplitude -sigma a V0 t. Through the lens its image contrast is linear in t:

    I/I_vac - 1 = IFFT[ T(k) H(k) ],   H(k) = 2 sigma V0 (sin chi(k) - a cos chi(k))

At k = 0 this is the absorption law I = exp(-2 sigma a V0 t) to first order; at low k it adds
the defocus phase contrast that makes bright and dark Fresnel fringes at every edge. Taking
the local mean intensity alone mistakes those fringes for material (or for holes); dividing by
H (a Wiener filter, low-passed below the first Thon ring) removes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from stream3d.physics import chi, interaction_constant
from stream3d.popout.ctf_model import Optics

#: Wiener regularisation, relative to the absorption transfer H(0)^2.
_WIENER = 0.05


@dataclass(frozen=True)
class ThicknessFilter:
    """Frequency response (real-FFT half-plane, float32) turning contrast into thickness (Å),
    and ``noise_gain``: thickness std (Å) per unit std of white pixel noise in the contrast."""

    response: np.ndarray
    noise_gain: float


@lru_cache(maxsize=8)
def thickness_filter(shape: tuple[int, int], *, defocus: float, optics: Optics, potential: float,
                     resolution: float) -> ThicknessFilter:
    """The :class:`ThicknessFilter` for material at effective ``defocus`` Å.

    ``potential`` V0 (V, material minus solvent); ``resolution`` Å: 1-sigma width of the
    Gaussian low-pass (the map cannot be sharper than the first Thon ring allows). Needs
    absorption > 0 (the k = 0 term). Cached: a stream of frames reuses it.
    """
    if optics.absorption <= 0:
        raise ValueError("thickness from contrast needs sample.absorption > 0")
    ny, nx = shape
    px = optics.pixel_size
    k2 = np.fft.fftfreq(ny, d=px)[:, None] ** 2 + np.fft.rfftfreq(nx, d=px)[None, :] ** 2
    phase = chi(k2, energy=optics.energy, defocus=defocus, cs=optics.cs)
    scale = 2.0 * interaction_constant(optics.energy) * potential
    h = scale * (np.sin(phase) - optics.absorption * np.cos(phase))
    h0 = scale * optics.absorption
    low_pass = np.exp(-2.0 * (math.pi * resolution) ** 2 * k2)
    # (1 + eps) restores the exact k = 0 gain 1/H(0): no bias in the mean thickness.
    response = low_pass * h * (1.0 + _WIENER) / (h * h + _WIENER * h0 * h0)
    # White noise of unit variance -> output variance = mean of |response|^2 over the full
    # grid; the half-plane holds the columns 1 .. (nx - 1) // 2 twice.
    twice = np.ones(response.shape[1])
    twice[1:(nx + 1) // 2] = 2.0
    gain = math.sqrt(float((response**2 * twice).sum()) / (ny * nx))
    response = response.astype(np.float32)
    response.setflags(write=False)
    return ThicknessFilter(response, gain)


def thickness_map(contrast: np.ndarray, filt: ThicknessFilter) -> np.ndarray:
    """Thickness (Å), float32 (y, x), of ``contrast`` = I / I_vacuum - 1 through ``filt``."""
    spectrum = scipy.fft.rfft2(np.asarray(contrast, dtype=np.float32), workers=1)
    spectrum *= filt.response
    return scipy.fft.irfft2(spectrum, s=contrast.shape, workers=1)
