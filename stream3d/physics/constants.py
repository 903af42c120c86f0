"""Relativistic electron optics constants (CODATA 2018), in Å, eV and volts."""

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
