"""Simulated frames of a thin amorphous film, the specimen calibrate is meant for."""

from __future__ import annotations

import dataclasses

import numpy as np

from stream3d.config import Config
from stream3d.simulate import simulate_frame


def film_config(*, defocus: float = 2500.0, astigmatism: float = 60.0, angle: float = 30.0,
                size: int = 512, dose: float = 2000.0, thickness: float = 20.0) -> Config:
    """300 kV, 1 Å pixels: one slice of ``thickness`` Å of amorphous film at the exit plane."""
    base = Config()
    return dataclasses.replace(
        base,
        microscope=dataclasses.replace(base.microscope, defocus=defocus, astigmatism=astigmatism,
                                       astigmatism_angle=angle),
        sample=dataclasses.replace(base.sample, slices=1, slice_thickness=thickness),
        detector=dataclasses.replace(base.detector, dose=dose),
        simulate=dataclasses.replace(base.simulate, ny=size, nx=size),
    )


def film_frame(config: Config, *, seed: int = 0) -> np.ndarray:
    """Poisson counts (y, x) of a uniform film filling the frame, one slice thick.

    Multislice transmits at the slice's top and propagates dz to the exit plane, so the film is
    seen at effective defocus microscope.defocus - sample.slice_thickness.
    """
    occupancy = np.ones((1, config.simulate.ny, config.simulate.nx), dtype=np.float32)
    counts, _ = simulate_frame(occupancy, config, seed=seed)
    return counts


def effective_defocus(config: Config) -> float:
    """The defocus (Å) at which the film of :func:`film_frame` is seen."""
    return config.microscope.defocus - config.sample.slice_thickness
