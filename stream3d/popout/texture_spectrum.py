"""The specimen's texture spectrum, measured from the frame's own patch spectra.

A patch of amorphous material images with the power spectrum

    PS(k) = noise + A S(k) T(k) sin^2(chi(k) - alpha)

where T(k) is the lens's (the temporal-coherence envelope squared, the aperture) and S(k) the
power spectrum of the material's texture: how fast it falls (or rises) across the band, which
the specimen alone decides and no user can know. Ring *positions* carry the height; if the
model's S(k) differs from the specimen's, the fit trades ring position for ring power and
heights come out tens of Å off. So S is measured from the data, as CTFFIND and Warp measure
their envelopes, by alternating with the ring fit:

1. a first S from the material patches' mean excess spectrum (its rings average out across
   patches at different heights, and within one patch over several rings): log S a cubic in k;
2. fit every patch's rings with that S; then, given each patch's fitted defocus (its ring
   pattern s_p(k)) and ring amplitude A_p, S(k) bin by bin is the least-squares ratio
   sum_p A_p s_p x_p / sum_p A_p^2 s_p^2 of the patches' excess spectra x_p, smoothed again
   by a cubic in log S weighted by how well each bin is determined; repeat.

S is a cubic of log power in k over the band (flat beyond it): Gaussian textures are quadratic
in that form, power laws and structure-factor peaks are smooth within a band a few Thon rings
wide. Its overall scale is arbitrary (the fit's amplitudes carry it).
"""

from __future__ import annotations

import numpy as np

#: Degree of the polynomial in k of log S (a Gaussian texture needs 2; one more for shapes
#: that are not Gaussian: power laws, structure-factor peaks).
DEGREE = 3

#: Share of the patches, by excess power, taken as material for the first estimate.
_TOP_SHARE = 0.3

#: Usable bins the smooth fit needs: its DEGREE + 1 coefficients and two to spare.
_MIN_BINS = DEGREE + 3

#: Samples of the band (u in 0..1) over which S's peak is found for its scale (the scale is
#: arbitrary, so only its tameness matters: a sampling choice, not measured).
_PEAK_SAMPLES = 65

#: A flat texture spectrum: (k_low, k_high, coefficients of log S in u = (k - k_low) / width).
FLAT: tuple[float, ...] = ()


def evaluate(texture: tuple[float, ...], k: np.ndarray) -> np.ndarray:
    """S(k) of a measured texture spectrum at |k| = ``k`` Å^-1 (1 for :data:`FLAT`); the value
    at the nearer band edge beyond the band, so the window blur never sees an extrapolation."""
    k = np.asarray(k, dtype=np.float64)
    if not texture:
        return np.ones_like(k)
    k_low, k_high, *coef = texture
    u = np.clip((k - k_low) / (k_high - k_low), 0.0, 1.0)
    # The scale is arbitrary: S's peak over the band is 1, which keeps the numbers tame.
    peak = np.polynomial.polynomial.polyval(np.linspace(0.0, 1.0, _PEAK_SAMPLES), coef).max()
    return np.exp(np.polynomial.polynomial.polyval(u, coef) - peak)


def smooth_fit(k: np.ndarray, value: np.ndarray, weight: np.ndarray, k_low: float,
               k_high: float) -> tuple[float, ...]:
    """A texture spectrum whose log is the weighted least-squares cubic through log ``value``
    at ``k`` (Å^-1); bins with a non-positive value or zero weight are left out. FLAT when
    fewer than :data:`_MIN_BINS` bins are usable."""
    ok = (value > 0) & (weight > 0) & np.isfinite(value)
    if ok.sum() < _MIN_BINS:
        return FLAT
    u = (k[ok] - k_low) / (k_high - k_low)
    # log of a ratio of noisy sums: its error ~ 1 / (value's relative precision); weight is
    # that precision squared.
    w = np.sqrt(weight[ok])
    basis = np.vander(u, DEGREE + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(basis * w[:, None], np.log(value[ok]) * w, rcond=None)
    return (float(k_low), float(k_high), *map(float, coef))


def first_estimate(excess: np.ndarray, lens: np.ndarray, k: np.ndarray, k_low: float,
                   k_high: float, spread: np.ndarray | None = None) -> tuple[float, ...]:
    """S from the mean excess spectrum (profile - noise, (n, bins)) of the patches holding most
    power, divided by the lens's ``lens`` T(k) (bins,); sin^2 averages to 1/2 over rings.
    ``spread`` (bins,): each bin's noise power relative to the white noise's (a support
    membrane's speckle, 1 + F / noise), whose square divides the bin's weight; None = 1."""
    power = excess.sum(axis=1)
    top = power >= np.quantile(power, 1.0 - _TOP_SHARE)
    mean = excess[top].mean(axis=0)
    weight = np.where(lens > 1e-6, 1.0, 0.0)
    if spread is not None:
        weight = weight / spread**2
        weight = weight / max(float(weight.max()), 1e-300)
    return smooth_fit(k, mean / np.maximum(lens, 1e-12), weight, k_low, k_high)


def refined_estimate(excess: np.ndarray, rings: np.ndarray, amplitude: np.ndarray,
                     weight: np.ndarray, k: np.ndarray, k_low: float,
                     k_high: float, spread: np.ndarray | None = None) -> tuple[float, ...]:
    """S given every patch's fitted rings.

    ``excess`` (n, bins) profile - noise; ``rings`` (n, bins) each patch's ring pattern
    T(k) sin^2(chi - alpha) at its fitted defocus (window-blurred, flat S); ``amplitude`` (n,)
    its ring amplitude; ``weight`` (n,) >= 0 how much to trust the patch (0 = not material).
    Per bin, S is the least-squares factor of excess ~ amplitude x S x pattern over the
    patches; a bin where every patch's rings have a zero is undetermined, so each bin's weight
    in the smooth fit is its Fisher information (the denominator), over ``spread`` squared
    where a background's speckle widens some bins' noise (see :func:`first_estimate`).
    """
    a = np.maximum(amplitude, 0.0)
    numerator = ((a * weight)[:, None] * rings * excess).sum(axis=0)
    denominator = ((a * a * weight)[:, None] * rings * rings).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / denominator
    precision = np.where(np.isfinite(ratio), denominator, 0.0)
    if spread is not None:
        precision = precision / spread**2
    if not precision.max() > 0:
        return FLAT
    return smooth_fit(k, ratio, precision / precision.max(), k_low, k_high)
