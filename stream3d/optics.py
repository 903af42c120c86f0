"""Electron optics as plain arithmetic, no torch: relativistic constants (CODATA 2018), the
aberration phase chi (with two-fold astigmatism), the temporal-coherence envelope and the
2/3-Nyquist band limit, in Å, eV,
volts and radians. Works on floats, numpy arrays and torch tensors alike, so numpy-only tools
(``stream3d calibrate``) start without loading torch; :mod:`stream3d.physics` re-exports it.
"""

from __future__ import annotations

import math

# CODATA 2018 exact / recommended values, SI.
PLANCK = 6.62607015e-34  # J s
ELECTRON_MASS = 9.1093837015e-31  # kg
ELEMENTARY_CHARGE = 1.602176634e-19  # C
SPEED_OF_LIGHT = 299792458.0  # m / s
ELECTRON_REST_ENERGY_EV = ELECTRON_MASS * SPEED_OF_LIGHT**2 / ELEMENTARY_CHARGE  # ~510998.95 eV


def _check_energy(energy: float) -> float:
    energy = float(energy)
    if not math.isfinite(energy) or energy <= 0:
        raise ValueError(f"energy must be a positive number of eV, got {energy!r}")
    return energy


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength (Å) for an accelerating voltage ``energy`` (eV).

    lambda = h c / sqrt(E (2 m c^2 + E)), with E the kinetic energy.
    """
    energy = _check_energy(energy)
    e_joule = energy * ELEMENTARY_CHARGE
    rest = ELECTRON_MASS * SPEED_OF_LIGHT**2
    lam_m = PLANCK * SPEED_OF_LIGHT / math.sqrt(e_joule * (2.0 * rest + e_joule))
    return lam_m * 1e10


def interaction_constant(energy: float) -> float:
    """Interaction constant sigma (rad / (V Å)) for an accelerating voltage ``energy`` (eV).

    sigma = (2 pi / (lambda E)) (m c^2 + E) / (2 m c^2 + E): the phase a projected potential of
    1 V·Å imparts (Kirkland, eq. 5.6).
    """
    energy = _check_energy(energy)
    rest = ELECTRON_REST_ENERGY_EV
    return 2.0 * math.pi / (wavelength(energy) * energy) * (rest + energy) / (2.0 * rest + energy)


#: Fraction of Nyquist kept by the anti-aliasing band limit.
BAND_LIMIT_FRACTION = 2.0 / 3.0


def band_limit_cutoff(sampling: tuple[float, float]) -> float:
    """Radius (Å^-1) of the 2/3-Nyquist anti-aliasing disc for lateral sampling (dy, dx) Å."""
    return BAND_LIMIT_FRACTION * 0.5 / max(sampling)


def chi(k2, *, energy: float, defocus: float, cs: float):
    """Aberration phase chi(k) (rad) at |k|^2 = ``k2`` (Å^-2; numpy or torch, broadcast).

    chi = -pi lambda defocus k^2 + (pi/2) Cs lambda^3 k^4; defocus > 0 is underfocus (Å), Cs in Å.
    """
    lam = wavelength(energy)
    return -math.pi * lam * defocus * k2 + 0.5 * math.pi * cs * lam**3 * k2**2


def astigmatic_chi(ky, kx, *, energy: float, defocus: float, cs: float, astigmatism: float = 0.0,
                   astigmatism_angle: float = 0.0):
    """Aberration phase chi (rad) at spatial frequency (ky, kx) (Å^-1; numpy or torch, broadcast).

    chi = -pi lambda (defocus - C12 cos 2(phi - phi12)) k^2 + (pi/2) Cs lambda^3 k^4 with phi the
    direction of k from +x (axis 1) toward +y (axis 0), C12 = ``astigmatism`` Å and phi12 =
    ``astigmatism_angle`` degrees (the least underfocused direction). Written with
    k^2 cos 2(phi - phi12) = (kx^2 - ky^2) cos 2phi12 + 2 kx ky sin 2phi12, so no angle is formed
    and k = 0 is regular.
    """
    lam = wavelength(energy)
    k2 = ky * ky + kx * kx
    phase = chi(k2, energy=energy, defocus=defocus, cs=cs)
    if astigmatism == 0:
        return phase
    a = math.radians(2.0 * astigmatism_angle)
    oriented = (kx * kx - ky * ky) * math.cos(a) + 2.0 * kx * ky * math.sin(a)
    return phase + math.pi * lam * astigmatism * oriented


def temporal_envelope(k2, *, energy: float, focal_spread: float):
    """Temporal-coherence envelope of the wave, exp(-(pi lambda Delta k^2)^2 / 4), at |k|^2 =
    ``k2`` (Å^-2; numpy or torch, broadcast). ``focal_spread`` Delta (Å) is the 1/e half-width
    of a Gaussian spread of defocus. The one formula: the forward model multiplies the image
    wave by it, a power spectrum (Thon rings) carries its square."""
    lam = wavelength(energy)
    exponent = -((math.pi * lam * focal_spread * k2) ** 2) / 4.0
    if hasattr(exponent, "exp"):  # a torch tensor: stays on its device and in its dtype
        return exponent.exp()
    import numpy as np

    return np.exp(exponent)
