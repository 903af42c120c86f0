"""Material thickness from the frame's phase and absorption contrast.

The mean (untextured) potential of material of thickness t(x) at effective defocus D is a weak
object with phase sigma V0 t and amplitude -sigma a V0 t. Through the lens and the camera
(its MTF M(k)) its image contrast is linear in t:

    I/I_vac - 1 = IFFT[ T(k) H(k) ],   H(k) = 2 sigma V0 (sin chi_D(k) - a cos chi_D(k)) M(k)

A Wiener filter H / (H^2 + alpha H0^2), H0 = 2 sigma V0, inverts it; that undoes the Fresnel
fringes and the lens delocalisation, so the map's edges sit where the material ends. With
absorption (a > 0) the k = 0 term is the absorption law. Without it (the usual case for
amorphous material) the transfer vanishes as k^2 (phase contrast only): the filter recovers t
down to the scale where H^2 ~ alpha H0^2 (the generalisation of Paganin's single-distance
phase retrieval to the full CTF at large defocus); what is lost is a slowly varying offset,
removed against the solvent by :func:`solvent_background`. alpha is the noise-to-signal ratio
of the Wiener filter, proportional to the Poisson noise variance 1 / counts per unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import ndimage

from stream3d.physics import astigmatic_chi, interaction_constant
from stream3d.popout.ctf_model import Optics

#: Wiener noise-to-signal ratio alpha at one count per unit intensity; alpha = this / counts.
#: Chosen on a 60 Å disc at 2000 e/Å²: smaller lets low-frequency noise in, larger loses the
#: middle of wide objects.
_WIENER_COUNTS = 2e-3

#: Solvent weight (the normalised convolution's, 0..1) below which the solvent offset fades
#: linearly to the frame's mean offset: far from any solvent there is nothing local to measure.
#: Set by hand on the accuracy suite's seed 0.
_FADE_WEIGHT = 1e-2


@dataclass(frozen=True)
class ThicknessFilter:
    """Frequency response (real-FFT half-plane, float32) turning contrast into thickness (Å)."""

    response: np.ndarray
    defocus: float  # Å, effective defocus the filter inverts


@lru_cache(maxsize=64)
def thickness_filter(shape: tuple[int, int], *, defocus: float, optics: Optics, potential: float,
                     resolution: float, counts_per_unit: float) -> ThicknessFilter:
    """The :class:`ThicknessFilter` for material at effective ``defocus`` Å.

    ``potential`` V0 (V, material minus solvent); ``resolution`` Å: 1-sigma width of the
    Gaussian low-pass; ``counts_per_unit``: detector counts of intensity 1 (sets the Wiener
    regularisation from the shot noise). Cached: a stream of frames reuses it.
    """
    ny, nx = shape
    px = optics.pixel_size
    ky, kx = np.fft.fftfreq(ny, d=px)[:, None], np.fft.rfftfreq(nx, d=px)[None, :]
    k2 = ky**2 + kx**2
    phase = astigmatic_chi(ky, kx, energy=optics.energy, defocus=defocus, cs=optics.cs,
                           astigmatism=optics.astigmatism,
                           astigmatism_angle=optics.astigmatism_angle)
    scale = 2.0 * interaction_constant(optics.energy) * potential
    # The camera's MTF multiplies the contrast (not the white shot noise the filter weighs).
    camera = optics.mtf.array((ny, nx))[:, :nx // 2 + 1]
    h = scale * (np.sin(phase) - optics.absorption * np.cos(phase)) * camera
    alpha = _WIENER_COUNTS / max(counts_per_unit, 1e-12)
    low_pass = np.exp(-2.0 * (math.pi * resolution) ** 2 * k2) * (k2 <= optics.k_max() ** 2)
    response = (low_pass * h / (h * h + alpha * scale * scale)).astype(np.float32)
    response.setflags(write=False)
    return ThicknessFilter(response, float(defocus))


def thickness_map(contrast: np.ndarray, filt: ThicknessFilter) -> np.ndarray:
    """Thickness (Å), float32 (y, x), of ``contrast`` = I / I_vacuum - 1 through ``filt``."""
    spectrum = scipy.fft.rfft2(np.asarray(contrast, dtype=np.float32), workers=1)
    spectrum *= filt.response
    return scipy.fft.irfft2(spectrum, s=contrast.shape, workers=1)


def layered_thickness(contrast: np.ndarray, effective_defocus: np.ndarray, *, step: float,
                      **filter_args) -> np.ndarray:
    """Thickness (Å) where each pixel's material is at its own effective defocus (Å, (y, x)).

    The contrast is inverted at defoci every ``step`` Å across the map's range and each pixel
    interpolates linearly between the two that bracket its defocus (material at several
    heights). ``filter_args`` as :func:`thickness_filter` less ``defocus``.
    """
    lo, hi = float(np.nanmin(effective_defocus)), float(np.nanmax(effective_defocus))
    grid = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
    maps = [thickness_map(contrast, thickness_filter(contrast.shape, defocus=float(d),
                                                     **filter_args)) for d in grid]
    if len(grid) == 1:
        return maps[0]
    position = np.clip((effective_defocus - grid[0]) / step, 0.0, len(grid) - 1.0)
    below = np.minimum(np.floor(position).astype(int), len(grid) - 2)
    frac = (position - below).astype(np.float32)
    stack = np.stack(maps)
    take = lambda i: np.take_along_axis(stack, i[None], 0)[0]  # noqa: E731
    return take(below) * (1 - frac) + take(below + 1) * frac


def solvent_background(thickness: np.ndarray, solvent: np.ndarray, sigma_px: float) -> np.ndarray:
    """Slowly varying offset (Å) of a thickness map, measured on the ``solvent`` pixels
    (normalised Gaussian convolution of width ``sigma_px``); 0 where no solvent is near."""
    weight = ndimage.gaussian_filter(solvent.astype(np.float32), sigma_px, mode="nearest")
    level = ndimage.gaussian_filter(np.where(solvent, thickness, 0.0).astype(np.float32),
                                    sigma_px, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        background = np.where(weight > 1e-3, level / np.maximum(weight, 1e-3), 0.0)
    # Far from any solvent the offset is the mean one, not 0.
    mean = float(thickness[solvent].mean()) if solvent.any() else 0.0
    fade = np.clip(weight / _FADE_WEIGHT, 0.0, 1.0)
    return (background * fade + mean * (1 - fade)).astype(np.float32)
