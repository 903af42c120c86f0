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

import numpy as np
import scipy.fft

from stream3d.physics import chi, interaction_constant
from stream3d.popout.ctf_model import Optics

#: Wiener regularisation, relative to the absorption transfer H(0)^2.
_WIENER = 0.05


def thickness_map(contrast: np.ndarray, *, defocus: float, optics: Optics, potential: float,
                  resolution: float) -> np.ndarray:
    """Thickness (Å) of material at effective ``defocus`` Å that explains ``contrast`` (y, x).

    ``contrast`` = I / I_vacuum - 1; ``potential`` V0 (V, material minus solvent);
    ``resolution`` Å: a Gaussian low-pass of that 1-sigma width is applied (the map cannot be
    sharper than the first Thon ring allows). Needs absorption > 0 (the k = 0 term).
    """
    if optics.absorption <= 0:
        raise ValueError("thickness from contrast needs sample.absorption > 0")
    ny, nx = contrast.shape
    px = optics.pixel_size
    k2 = np.fft.fftfreq(ny, d=px)[:, None] ** 2 + np.fft.rfftfreq(nx, d=px)[None, :] ** 2
    phase = chi(k2, energy=optics.energy, defocus=defocus, cs=optics.cs)
    scale = 2.0 * interaction_constant(optics.energy) * potential
    h = scale * (np.sin(phase) - optics.absorption * np.cos(phase))
    h0 = scale * optics.absorption
    low_pass = np.exp(-2.0 * (math.pi * resolution) ** 2 * k2)
    # (1 + eps) restores the exact k = 0 gain 1/H(0): no bias in the mean thickness.
    inverse = low_pass * h * (1.0 + _WIENER) / (h * h + _WIENER * h0 * h0)
    spectrum = scipy.fft.rfft2(contrast, workers=1)
    return scipy.fft.irfft2(spectrum * inverse, s=contrast.shape, workers=1)
