"""The forward model refinement differentiates through: real V -> complex potential -> image.

The refined quantity is the real potential V (volts); the absorptive part is tied to it by the
material's ``absorption`` ratio, as in the specimen model, so one number per voxel is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stream3d.config import Config
from stream3d.mtf import mtf_from_config
from stream3d.physics import MTF, forward
from stream3d.specimen.membrane import membrane_profile


@dataclass(frozen=True)
class ImagingModel:
    """Optics, sampling and material constants of one experiment (plain numbers, no config)."""

    sampling: tuple[float, float, float]  # (dz, dy, dx) Å
    energy: float  # eV
    defocus: float  # Å, > 0 underfocus, from the exit plane
    cs: float  # Å
    aperture: float  # mrad
    focal_spread: float  # Å, 1/e half-width
    potential: float  # V, material minus solvent
    absorption: float  # imaginary / real ratio of the potential
    counts_per_unit: float  # mean counts of unit intensity: dose (e/Å²) x pixel area (Å²)
    astigmatism: float = 0.0  # Å, C12
    astigmatism_angle: float = 0.0  # degrees, phi12
    mtf: MTF = MTF()  # the camera's transfer, applied to the expected intensity
    # V per slice (slice 0 first) of the support membranes (sample.membranes): a fixed
    # background slab, uniform across the field (their texture is unknown), never refined;
    # () = none. Its phase is uniform (no contrast); its absorption darkens every column.
    membrane: tuple[float, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> ImagingModel:
        m, s = config.microscope, config.sample
        return cls(sampling=s.sampling, energy=m.energy, defocus=m.defocus, cs=m.cs,
                   aperture=m.aperture, focal_spread=m.focal_spread, potential=s.potential,
                   absorption=s.absorption,
                   counts_per_unit=config.detector.dose * s.pixel_size**2,
                   astigmatism=m.astigmatism, astigmatism_angle=m.astigmatism_angle,
                   mtf=mtf_from_config(config), membrane=_membrane_volts(config))

    @property
    def dz(self) -> float:
        return self.sampling[0]

    def complex_potential(self, volume: torch.Tensor) -> torch.Tensor:
        """V (1 + i absorption): the complex potential of a real volume (V)."""
        return torch.complex(volume, volume * self.absorption)

    def intensity(self, volume: torch.Tensor) -> torch.Tensor:
        """Image intensity (vacuum = 1) of a real volume (nz, ny, nx) in V; differentiable."""
        return self.intensity_of_complex(self.complex_potential(volume))

    def intensity_of_complex(self, potential: torch.Tensor) -> torch.Tensor:
        """Image intensity of a complex potential (nz, ny, nx) in V (the membranes added)."""
        if self.membrane:
            slab = torch.as_tensor(self.membrane, dtype=potential.real.dtype,
                                   device=potential.device)[:, None, None]
            potential = potential + torch.complex(slab, slab * self.absorption)
        return forward(potential, sampling=self.sampling, energy=self.energy,
                       defocus=self.defocus, cs=self.cs, aperture=self.aperture,
                       focal_spread=self.focal_spread, astigmatism=self.astigmatism,
                       astigmatism_angle=self.astigmatism_angle, mtf=self.mtf)


def _membrane_volts(config: Config) -> tuple[float, ...]:
    """V per slice of ``sample.membranes`` (the share of each slice a membrane fills x its
    potential); () without membranes, so the model is exactly the membrane-free one."""
    s = config.sample
    if not s.membranes:
        return ()
    volts = np.zeros(s.slices)
    for membrane in s.membranes:
        volts += membrane.potential * membrane_profile(membrane, s.slices, s.slice_thickness)
    return tuple(float(v) for v in volts)
