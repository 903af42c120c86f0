"""The Thon-ring model of a patch power spectrum, for a grid of candidate defoci.

A weak phase object with absorption ratio a (imaginary/real potential) images with contrast
transfer 2 (sin chi - a cos chi) = 2 sqrt(1 + a^2) sin(chi - alpha), alpha = atan(a), so the
spectrum of its amorphous texture is

    PS(k) = noise + A E(k) sin^2(chi(k) - alpha)

with chi from :func:`stream3d.physics.chi` (defocus > 0 underfocus) and E(k) the texture's
power spectrum S(k), measured from the frame (:mod:`stream3d.popout.texture_spectrum`; never
read from the config: a real specimen's is unknown), times the squared temporal-coherence
envelope. The Hann window blurs the spectrum of a patch by the window's own
power spectrum; that blur shifts the minima of a steeply falling spectrum outwards, so it is
applied to the model too (without it, depths come out biased by up to ~60 Å).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stream3d.config import Config
from stream3d.mtf import mtf_from_config
from stream3d.physics import astigmatic_chi, band_limit_cutoff, chi, wavelength
from stream3d.physics.detector import MTF
from stream3d.popout.patches import hann_window
from stream3d.popout.spectrum import radial_bins
from stream3d.popout.texture_spectrum import FLAT, evaluate


#: Samples of chi across the band when counting Thon rings (its total variation / pi): fine
#: enough that no ring of the searched defoci falls between two (a sampling choice; more
#: changes the count by far less than a ring).
_RING_COUNT_SAMPLES = 256


@dataclass(frozen=True)
class Optics:
    """What the Thon-ring model needs, in Å, eV, mrad (hashable, so models can be cached)."""

    energy: float  # eV
    cs: float  # Å
    aperture: float  # mrad, 0 = none
    focal_spread: float  # Å, 1/e half-width
    absorption: float  # imaginary / real potential of the material
    pixel_size: float  # Å
    astigmatism: float = 0.0  # Å, C12
    astigmatism_angle: float = 0.0  # degrees, phi12
    reference_defocus: float = 0.0  # Å, where elliptical averaging matches the rings exactly
    # The texture's power spectrum S(k) as measured from the frame (texture_spectrum.FLAT
    # until it is): see :func:`stream3d.popout.texture_spectrum.evaluate`.
    texture: tuple[float, ...] = FLAT
    # The camera's transfer (detector.mtf): it multiplies the image's contrast, not the shot
    # noise (which arises after it, white).
    mtf: MTF = MTF()

    @classmethod
    def from_config(cls, config: Config) -> Optics:
        m, s = config.microscope, config.sample
        middle = m.defocus - s.slices * s.slice_thickness / 2  # the middle of the cell
        return cls(m.energy, m.cs, m.aperture, m.focal_spread, s.absorption, s.pixel_size,
                   m.astigmatism, m.astigmatism_angle, middle, mtf=mtf_from_config(config))

    @property
    def ellipse(self) -> tuple[float, float, float, float, float] | None:
        """The lens for elliptical averaging (see :func:`radial_bins`); None without
        astigmatism (or when the reference is not underfocus, where rings cannot be mapped)."""
        if self.astigmatism <= 0 or not self.astigmatism < self.reference_defocus:
            return None
        return (self.energy, self.reference_defocus, self.cs, self.astigmatism,
                self.astigmatism_angle)

    @property
    def amplitude_phase(self) -> float:
        """alpha = atan(absorption) (rad): the amplitude-contrast phase shift of the rings."""
        return math.atan(self.absorption)

    def k_max(self) -> float:
        """Highest frequency (Å^-1) with signal: the 2/3-Nyquist band limit or the aperture."""
        k = band_limit_cutoff((self.pixel_size, self.pixel_size))
        if self.aperture > 0:
            k = min(k, self.aperture * 1e-3 / wavelength(self.energy))
        return k


def ring_phase(k: np.ndarray, defocus: np.ndarray | float, optics: Optics) -> np.ndarray:
    """chi(k) - alpha (rad) at |k| = ``k`` Å^-1 for effective ``defocus`` Å (broadcasts)."""
    return chi(np.asarray(k) ** 2, energy=optics.energy, defocus=np.asarray(defocus),
               cs=optics.cs) - optics.amplitude_phase


def ring_count(defocus: np.ndarray | float, optics: Optics, k_low: float, k_high: float) -> np.ndarray:
    """Number of Thon rings (zeros of sin(chi - alpha)) between k_low and k_high Å^-1.

    Counted as the total variation of chi over the band divided by pi, so it is fractional and
    also counts the rings of a non-monotonic chi (large Cs, near Scherzer focus).
    """
    k = np.linspace(k_low, k_high, _RING_COUNT_SAMPLES)
    phase = ring_phase(k, np.asarray(defocus, dtype=np.float64)[..., None], optics)
    return np.abs(np.diff(phase, axis=-1)).sum(axis=-1) / math.pi


def delocalisation(defoci: np.ndarray | float, optics: Optics, k_low: float,
                   k_high: float) -> float:
    """The farthest (Å) the lens moves any frequency of the band [k_low, k_high] Å^-1 for any of
    the effective ``defoci`` Å: a frequency k images displaced by |d chi / dk| / 2 pi
    (lambda |defocus k - Cs lambda^2 k^3|; astigmatism adds its amplitude to the defocus), so
    an object's Thon rings lie up to this far outside it. Largest in overfocus, where Cs adds
    to the defocus."""
    k = np.linspace(k_low, k_high, _RING_COUNT_SAMPLES)
    d = np.asarray(defoci, dtype=np.float64).reshape(-1, 1)
    # Astigmatism moves the defocus by up to its amplitude along one axis.
    d = np.concatenate([d - optics.astigmatism, d + optics.astigmatism])
    lam = wavelength(optics.energy)
    # d chi / dk / 2 pi for chi = -pi lambda defocus k^2 + pi/2 Cs lambda^3 k^4.
    return float(np.abs(lam * (optics.cs * lam**2 * k**3 - d * k)).max())


def lens_envelope(k: np.ndarray, optics: Optics) -> np.ndarray:
    """T(k): the temporal-coherence envelope squared times the camera's MTF squared (at |k|;
    the ``counting`` pixel's sinc along one axis), zero beyond :meth:`Optics.k_max`."""
    lam = wavelength(optics.energy)
    temporal = np.exp(-((math.pi * lam * optics.focal_spread * k**2) ** 2) / 2.0)
    camera = optics.mtf.radial(2.0 * np.asarray(k) * optics.pixel_size) ** 2  # k / Nyquist
    return temporal * camera * (k <= optics.k_max())


def envelope(k: np.ndarray, optics: Optics) -> np.ndarray:
    """E(k) = S(k) T(k): the measured texture power times :func:`lens_envelope`."""
    return evaluate(optics.texture, k) * lens_envelope(k, optics)


def search_defoci(config: Config) -> np.ndarray:
    """Candidate effective defoci (Å, ascending): material from ``-search_margin`` below the
    exit plane to ``search_margin`` above the cell top, every ``defocus_step`` Å."""
    p = config.popout
    depth = config.sample.slices * config.sample.slice_thickness
    heights = np.arange(-p.search_margin, depth + p.search_margin + 1e-9, p.defocus_step)
    return np.sort(config.microscope.defocus - heights)


@dataclass(frozen=True)
class ThonModel:
    """Radially binned, window-blurred E(k) sin^2(chi - alpha) for every candidate defocus.

    ``rings`` (nd, bins); ``level`` (bins,) the blurred envelope E alone (the shape of the
    spectrum's ring-averaged signal, used for weights).
    """

    defoci: np.ndarray
    rings: np.ndarray
    level: np.ndarray


@lru_cache(maxsize=8)
def thon_model(defoci: tuple[float, ...], patch: int, optics: Optics, k_low: float,
               k_high: float) -> ThonModel:
    """The :class:`ThonModel` of ``patch`` px patches over the band [k_low, k_high] Å^-1."""
    bins = radial_bins(patch, optics.pixel_size, k_low, k_high, optics.ellipse)
    ky = np.fft.fftfreq(patch, d=optics.pixel_size)
    k = np.sqrt(ky[:, None] ** 2 + ky[None, :] ** 2)  # full grid: the blur is a 2-D convolution
    env = envelope(k, optics)
    d = np.asarray(defoci, dtype=np.float64)
    # The rings of the astigmatic lens itself (2D), binned along its ellipses by ``bins``.
    phase = astigmatic_chi(ky[:, None], ky[None, :], energy=optics.energy,
                           defocus=d[:, None, None], cs=optics.cs,
                           astigmatism=optics.astigmatism,
                           astigmatism_angle=optics.astigmatism_angle) - optics.amplitude_phase
    model = env * np.sin(phase) ** 2
    # Expected windowed periodogram = spectrum (*) |FFT(window)|^2 (circular, on this grid).
    kernel = np.fft.fft2(np.abs(np.fft.fft2(hann_window(patch))) ** 2)
    kernel /= kernel[0, 0]
    half = patch // 2 + 1

    def blur_and_bin(spec: np.ndarray) -> np.ndarray:
        blurred = np.fft.ifft2(np.fft.fft2(spec) * kernel).real[..., :half]
        flat = blurred.reshape(-1, bins.select.size)
        return np.asarray(bins.average @ flat.T).T.reshape(*blurred.shape[:-2], bins.size)

    rings, level = blur_and_bin(model), blur_and_bin(env)
    for a in (d, rings, level):
        a.setflags(write=False)
    return ThonModel(d, rings, level)
