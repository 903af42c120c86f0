"""Relativistic electron optics constants: defined in :mod:`stream3d.optics` (no torch)."""

from stream3d.optics import (  # noqa: F401
    ELECTRON_MASS, ELECTRON_REST_ENERGY_EV, ELEMENTARY_CHARGE, PLANCK, SPEED_OF_LIGHT,
    interaction_constant, wavelength,
)

__all__ = ["ELECTRON_MASS", "ELECTRON_REST_ENERGY_EV", "ELEMENTARY_CHARGE", "PLANCK",
           "SPEED_OF_LIGHT", "interaction_constant", "wavelength"]
