"""Registration: each frame's lateral drift against the run's first frame.

Sub-pixel phase correlation (Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008), as
``skimage.registration.phase_cross_correlation``), weighted to the band where the specimen's
texture carries signal: the Thon-ring band that pop-out fits (``popout.k_low`` to
``popout.k_high``, clipped to the 2/3-Nyquist band limit and the objective aperture). Below
that band the image is the objects' outlines, which change as they grow; above it only shot
noise is left. The amorphous texture moves with the specimen, so its phase says where the
specimen went.

Reference: the run's **first frame**, not a running one. A running reference (the previous
frame) adds every step's error to the next, a random walk; against a fixed reference the error
of frame t is its own, and the stored shift is what DESIGN.md defines (drift against the run's
first frame). Growth changes the image, but the texture of the material already there and
the support's texture stay, so the correlation peak stays sharp over a growth movie.

Units: shifts are (dy, dx) in Å, the displacement of the specimen in frame t relative to where
it was in the first frame (a specimen that moved +3 px along x gives (0, +3 px x pixel size)).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy.signal.windows import tukey

from stream3d.config import Config
from stream3d.physics import wavelength
from stream3d.physics.grids import band_limit_cutoff

#: Upsampling of the correlation peak: shifts are resolved to 1/20 px.
UPSAMPLE = 20

#: A correlation peak counts only this many robust standard deviations above the surface's
#: median. Uncorrelated frames peak at about sqrt(2 ln N) ~ 4.7 sigma on 256² px (the largest of
#: N Gaussian values); a texture that moved with the specimen peaks at hundreds of sigma.
#: Below it the shift is unknown (NaN), not a guess: measured on the in situ movie with a
#: scintillator MTF, guesses from noise landed half a frame (122 px) away.
MIN_PEAK_SIGMAS = 8.0


def registration_band(config: Config) -> tuple[float, float]:
    """(k_low, k_high) Å^-1 of the band the correlation weighs: pop-out's Thon-ring band,
    clipped to the 2/3-Nyquist band limit and the objective aperture."""
    m, s, p = config.microscope, config.sample, config.popout
    k_high = min(p.k_high, band_limit_cutoff((s.pixel_size, s.pixel_size)))
    if m.aperture > 0:
        k_high = min(k_high, m.aperture * 1e-3 / wavelength(m.energy))
    return p.k_low, max(k_high, p.k_low * 1.5)


def band_weights(shape: tuple[int, int], *, pixel_size: float, band: tuple[float, float]
                 ) -> np.ndarray:
    """Weights (ny, nx) on the FFT grid: 1 inside ``band`` (Å^-1), smooth (cosine) edges a
    tenth of the band wide, 0 outside."""
    ny, nx = shape
    k = np.hypot(np.fft.fftfreq(ny, d=pixel_size)[:, None],
                 np.fft.fftfreq(nx, d=pixel_size)[None, :])
    low, high = band
    edge = 0.1 * (high - low)
    rise = np.clip((k - (low - edge)) / edge, 0, 1)
    fall = np.clip(((high + edge) - k) / edge, 0, 1)
    return (np.sin(0.5 * math.pi * rise) * np.sin(0.5 * math.pi * fall)) ** 2


def prepared_spectrum(frame: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The frame's Fourier transform ready to correlate: contrast (frame / mean - 1) under a
    Tukey window (a real frame's edges do not move with the specimen), phase only, times
    sqrt(weights) (so that the cross-power spectrum carries ``weights``)."""
    f = np.asarray(frame, dtype=np.float64)
    mean = f.mean()
    contrast = f / mean - 1.0 if mean > 0 else f - mean
    window = np.outer(tukey(f.shape[0], 0.2), tukey(f.shape[1], 0.2))
    spectrum = scipy.fft.fft2(contrast * window, workers=1)
    return spectrum / np.maximum(np.abs(spectrum), 1e-12) * np.sqrt(weights)


class Registration:
    """Shifts of frames against one reference frame (raw counts (y, x), ``pixel_size`` Å)."""

    def __init__(self, reference: np.ndarray, *, pixel_size: float,
                 band: tuple[float, float]) -> None:
        self.pixel_size = float(pixel_size)
        self.band = band
        self.weights = band_weights(np.shape(reference), pixel_size=pixel_size, band=band)
        self.reference = prepared_spectrum(reference, self.weights)

    @classmethod
    def from_config(cls, reference: np.ndarray, config: Config) -> Registration:
        return cls(reference, pixel_size=config.sample.pixel_size,
                   band=registration_band(config))

    def shift(self, frame: np.ndarray) -> tuple[float, float]:
        """(dy, dx) Å the specimen moved in ``frame`` since the reference (1/20 px steps);
        NaN (never an error: a bad frame fails in pop-out, once) when the frame's shape differs
        from the reference's or either holds no finite correlation."""
        unknown = (math.nan, math.nan)
        if np.shape(frame) != self.weights.shape or not np.isfinite(frame).all():
            return unknown
        from skimage.registration import phase_cross_correlation

        moving = prepared_spectrum(frame, self.weights)
        if peak_sigmas(self.reference, moving) < MIN_PEAK_SIGMAS:
            return unknown
        try:
            found, _, _ = phase_cross_correlation(self.reference, moving, space="fourier",
                                                  upsample_factor=UPSAMPLE, normalization=None)
        except ValueError:  # NaN in the correlation (e.g. a reference frame without counts)
            return unknown
        # skimage: the shift that brings ``moving`` onto the reference = minus the drift.
        return (-float(found[0]) * self.pixel_size, -float(found[1]) * self.pixel_size)


def peak_sigmas(reference: np.ndarray, moving: np.ndarray) -> float:
    """How far the whole-pixel correlation peak of two prepared spectra stands above the
    correlation surface: (max - median) / (1.4826 x median absolute deviation); 0 when the
    surface is flat or not finite."""
    surface = scipy.fft.ifft2(reference * np.conj(moving), workers=1).real
    if not np.isfinite(surface).all():
        return 0.0
    middle = float(np.median(surface))
    spread = 1.4826 * float(np.median(np.abs(surface - middle)))
    return (float(surface.max()) - middle) / spread if spread > 0 else 0.0


def measure_shift(registration: Registration, frame: np.ndarray) -> tuple[float, float]:
    """:meth:`Registration.shift` as a plain function (a dask task)."""
    return registration.shift(frame)


def shift_pixels(shift: tuple[float, float], pixel_size: float) -> tuple[int, int]:
    """A shift (Å) as whole pixels of ``pixel_size`` Å (rounded)."""
    return (int(round(shift[0] / pixel_size)), int(round(shift[1] / pixel_size)))


def moved(array: np.ndarray, step: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """``array`` (..., y, x) moved by ``step`` (dy, dx) whole pixels along its last two axes;
    what enters at the edges is ``fill`` (no wrap-around: a real field of view has edges)."""
    dy, dx = step
    out = np.full_like(array, fill)
    ny, nx = array.shape[-2:]
    if abs(dy) >= ny or abs(dx) >= nx:
        return out
    src_y = slice(max(-dy, 0), ny - max(dy, 0))
    dst_y = slice(max(dy, 0), ny - max(-dy, 0))
    src_x = slice(max(-dx, 0), nx - max(dx, 0))
    dst_x = slice(max(dx, 0), nx - max(-dx, 0))
    out[..., dst_y, dst_x] = array[..., src_y, src_x]
    return out
