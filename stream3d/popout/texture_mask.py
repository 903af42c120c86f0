"""Material mask from the amorphous texture alone, for pure phase objects (absorption 0).

Material scatters: its band-passed local variance exceeds the Poisson noise of the frame.
Without absorption there is no contrast at k = 0 to measure thickness from, so this mask is
all pop-out can say about where material is (Fresnel fringes widen it by a few pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft
from scipy import ndimage

#: Material's band-passed variance must exceed the Poisson noise's by this factor (1: the
#: variance is 2x the noise's). The default window (sigma 5 px) holds ~90 independent samples
#: of the band, so the noise's own variance estimate scatters by ~15 %; 1 leaves room for a
#: noise 30 % above Poisson (a detector gain that is off: tests/test_popout.py) on top of that.
#: Low, because a weak texture (or one whose power lies mostly beyond the band) must still be
#: found: what this mask misses is taken for solvent, and a wide object's interior, which
#: phase contrast hardly transfers, is then lost. Measured with pop-out alone on the accuracy
#: suite (seed 0, median height Å / 3D IoU): at 3 (the value before) the weak texture family
#: gave 80.6 / 0.288 and the peaked one 129 / 0.304 (its dendrite 12 % found); at 1,
#: 37.7 / 0.402 and 13.5 / 0.562 (at 0.5 a little better again, but a 30 % noise excess then
#: called the whole frame material).
EXCESS = 1.0


def texture_mask(intensity: np.ndarray, *, k_low: float, k_high: float, pixel_size: float,
                 counts_per_unit: float, sigma_px: float, excess: float = EXCESS,
                 background: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Pixels whose variance in the band [k_low, k_high] Å^-1 (local Gaussian window of
    ``sigma_px``) exceeds the Poisson noise there by more than ``excess`` times.

    ``background(k)``: power every pixel holds at |k| Å^-1 besides its material's, relative
    to the Poisson noise's (a support membrane's texture: not material to be found). The band
    is then whitened, each frequency's power divided by 1 + background, so noise and
    background are one white level and material counts where it differs from the background
    (between the membrane's rings), not where both are strong. Whitening favours the
    background's ring zeros, where a model of it is least exact, so the threshold's level is
    then the frame's median of the whitened variance over its expected level (most of the
    field is bare background: the assumption of :mod:`stream3d.popout.membrane`). Measured on
    benchmarks/membrane.py this found more of the discs near a membrane than weighting by
    the objects' spectrum over (1 + background)^2 (the small-excess likelihood ratio).

    ``counts_per_unit`` is the detector counts of intensity 1 (dose x pixel area): the noise
    variance of a pixel of intensity I is I / counts_per_unit.
    """
    ny, nx = intensity.shape
    k = np.sqrt(np.fft.fftfreq(ny, d=pixel_size)[:, None] ** 2
                + np.fft.rfftfreq(nx, d=pixel_size)[None, :] ** 2)
    power = _band_power(k, k_low, k_high, background)
    passed = scipy.fft.irfft2(scipy.fft.rfft2(intensity - intensity.mean(), workers=1)
                              * np.sqrt(power), s=intensity.shape, workers=1)
    variance = ndimage.gaussian_filter(passed * passed, sigma_px)
    k_full = np.sqrt(np.fft.fftfreq(ny, d=pixel_size)[:, None] ** 2
                     + np.fft.fftfreq(nx, d=pixel_size)[None, :] ** 2)
    # The null (noise + background) variance passed, per unit of Poisson noise.
    power_full = _band_power(k_full, k_low, k_high, background)
    if background is not None:
        power_full = power_full * (1.0 + background(k_full))
    fraction = float(power_full.mean())
    noise = ndimage.gaussian_filter(intensity, sigma_px) / counts_per_unit * fraction
    if background is not None:
        noise = noise * float(np.median(variance / noise))
    return variance > (1.0 + excess) * noise


def _band_power(k: np.ndarray, k_low: float, k_high: float,
                background: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """The filter's power at |k|: 1 in the band, divided there by 1 + background."""
    band = ((k >= k_low) & (k <= k_high)).astype(np.float64)
    return band if background is None else band / (1.0 + background(k))
