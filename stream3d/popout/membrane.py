"""Support membranes as a background layer of every patch's spectrum (``sample.membranes``).

A membrane fills every column at a known height, so its Thon rings lie under every patch's:

    PS_patch(k) = noise + A S(k) T(k) sin^2(chi_object) + F(k),
    F(k) = A_m S_m(k) T(k) <sin^2(chi(k) at the membrane's depths)>

(the textures of object and membrane are independent, so their powers add). Fitted as one
ring pattern, a patch's spectrum mixes the two and its height is pulled toward the
membrane's; with no object the membrane's rings alone are fitted and read as material. So F is
measured once per frame and taken out of every patch's spectrum before the rings are fitted:

- its ring pattern is known: the lens at the membranes' depths (config: height, thickness;
  thick membranes average sin^2 over their depth, thin ones weigh as V^2 x thickness, the
  texture power of a layer of that material);
- its texture spectrum S_m and amplitude A_m are the specimen's, measured from the patches
  with least excess power (bare membrane): S_m as a smooth log-cubic like the objects'
  (:mod:`stream3d.popout.texture_spectrum`), never read from the config.

The patches holding least power are bare membrane as long as objects cover less than
1 - :data:`BARE_SHARE` of the field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stream3d.config import Config
from stream3d.popout import texture_spectrum
from stream3d.popout.ctf_model import Optics, envelope, ring_phase, thon_model

#: Share of the patches, by excess power, taken as bare membrane.
BARE_SHARE = 0.25

#: Å, most depth between two of the sub-layers a thick membrane's rings are averaged over.
SUBLAYER = 10.0


@dataclass(frozen=True)
class Background:
    """The membranes' part of every patch's radial power spectrum."""

    spectrum: np.ndarray  # (bins,) F(k), in the patch profiles' power units
    k: np.ndarray  # (bins,) Å^-1, the bins' frequencies
    noise: float  # the white Poisson level of the profiles (same units)
    amplitude: float  # A_m: F = A_m x the window-blurred pattern of ``optics``
    optics: Optics  # with S_m, the membranes' measured texture spectrum, as ``texture``
    layers: tuple[tuple[float, ...], tuple[float, ...]]  # from :func:`layer_defoci`

    def relative(self, k: np.ndarray) -> np.ndarray:
        """The membranes' power / the Poisson noise's at |k| = ``k`` Å^-1, not blurred by any
        patch window (a whole frame's spectrum: its rings keep their zeros), astigmatism
        left out: how much more than shot noise they put at each frequency."""
        k = np.asarray(k, dtype=np.float64)
        if not self.noise > 0:
            return np.zeros_like(k)
        defoci, weights = self.layers
        rings = sum(w * np.sin(ring_phase(k, d, self.optics)) ** 2
                    for d, w in zip(defoci, weights))
        return self.amplitude * envelope(k, self.optics) * rings / self.noise


def layer_defoci(config: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(effective defoci Å, weights summing to 1) of the membranes' sub-layers.

    The multislice model images a slice's material at its top face, dz/2 above its centre
    (as pop-out's heights assume). Each membrane weighs V^2 x thickness (its texture power),
    spread evenly over its sub-layers.
    """
    m, s = config.microscope, config.sample
    defoci, weights = [], []
    for membrane in s.membranes:
        n = max(int(np.ceil(membrane.thickness / SUBLAYER)), 1)
        centres = membrane.bottom + (np.arange(n) + 0.5) * membrane.thickness / n
        defoci.extend(m.defocus - centres - s.slice_thickness / 2)
        weights.extend([membrane.potential**2 * membrane.thickness / n] * n)
    total = sum(weights)
    return tuple(float(d) for d in defoci), tuple(w / total for w in weights)


def ring_pattern(defoci: tuple[float, ...], weights: tuple[float, ...], patch: int, optics: Optics,
                 k_low: float, k_high: float) -> np.ndarray:
    """(bins,) the window-blurred S T sin^2 of the membranes (``optics.texture`` = S),
    averaged over their sub-layers with ``weights``."""
    return np.asarray(weights) @ thon_model(defoci, patch, optics, k_low, k_high).rings


def bare(excess: np.ndarray) -> np.ndarray:
    """(n,) True for the :data:`BARE_SHARE` of patches with least excess power (n, bins)."""
    power = excess.sum(axis=1)
    return power <= np.quantile(power, BARE_SHARE)


def bare_mean(excess: np.ndarray) -> np.ndarray:
    """(bins,) the bare membrane's mean excess spectrum, from the :data:`BARE_SHARE` of the
    patches (n, bins) with least power.

    The patches are chosen by their power in the *other* half of the band: chosen by their
    own, the bins are biased low, for the patches whose membrane speckle happens to be weak
    are the ones chosen (measured: 0.57-0.85 x the bare frame's mean below 0.15 Å^-1); the
    speckle of bins far apart is independent, an object's power covers the band.
    """
    half = excess.shape[1] // 2
    low, high = excess[:, :half], excess[:, half:]
    return np.concatenate([low[bare(high)].mean(axis=0), high[bare(low)].mean(axis=0)])


def measure(excess: np.ndarray, counts: np.ndarray, noise: float, k: np.ndarray,
            layers: tuple[tuple[float, ...], tuple[float, ...]], patch: int, optics: Optics,
            k_low: float, k_high: float) -> Background:
    """The membranes' :class:`Background` from the patches' excess spectra (profile - noise,
    (n, bins)); ``counts`` pixels per bin, ``noise`` the white Poisson level, ``k`` the bins'
    frequencies (Å^-1), ``layers`` from :func:`layer_defoci`. S_m is measured here (the
    objects' texture in ``optics`` is not used)."""
    defoci, weights = layers
    mean = bare_mean(excess)
    flat = replace(optics, texture=texture_spectrum.FLAT)
    pattern = ring_pattern(defoci, weights, patch, flat, k_low, k_high)
    # S_m bin by bin is mean / pattern, known best where the pattern is large (its Fisher
    # information ~ pattern^2): the objects' refined estimate with one "patch".
    texture = texture_spectrum.refined_estimate(mean[None], pattern[None], np.ones(1),
                                                np.ones(1), k, k_low, k_high)
    optics = replace(optics, texture=texture)
    pattern = ring_pattern(defoci, weights, patch, optics, k_low, k_high)
    # Least-squares amplitude, each bin weighted by its pixels (its mean's precision).
    denom = float((counts * pattern * pattern).sum())
    amplitude = max(float((counts * pattern * mean).sum()) / denom, 0.0) if denom > 0 else 0.0
    spectrum = amplitude * pattern
    spectrum.setflags(write=False)
    return Background(spectrum, np.asarray(k, dtype=np.float64), float(noise), amplitude,
                      optics, layers)
