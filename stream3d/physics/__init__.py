"""Differentiable HRTEM forward model: pure torch, no I/O, no config objects.

Conventions (docs/architecture.md): Å, eV, volts, radians; apertures in mrad. Slice 0 is the entrance;
defocus > 0 is underfocus measured from the exit plane; material h Å above the exit plane is
seen at effective defocus (defocus - h).
"""

from stream3d.physics.constants import interaction_constant, wavelength
from stream3d.physics.detector import MTF, apply_mtf, detect, expected_counts
from stream3d.physics.grids import band_limit, band_limit_cutoff, k_squared, propagator
from stream3d.physics.lens import astigmatic_chi, chi, image, image_wave, transfer_function
from stream3d.physics.multislice import multislice, transmission

__all__ = [
    "wavelength", "interaction_constant", "multislice", "transmission", "image", "image_wave",
    "chi", "astigmatic_chi", "transfer_function", "propagator", "band_limit", "band_limit_cutoff",
    "k_squared",
    "detect", "expected_counts", "forward", "MTF", "apply_mtf",
]


def forward(potential, *, sampling, energy, defocus, cs, aperture, focal_spread=0.0,
            astigmatism=0.0, astigmatism_angle=0.0, mtf=None):
    """Image intensity [ny, nx] of ``potential`` [nz, ny, nx] (V): multislice then the lens
    (``astigmatism`` C12 Å at ``astigmatism_angle`` degrees, as in :func:`image`), then the
    camera's ``mtf`` (:class:`MTF`; None = a perfect detector) on the expected intensity."""
    exit_wave = multislice(potential, sampling=sampling, energy=energy)
    intensity = image(exit_wave, sampling=sampling, energy=energy, defocus=defocus, cs=cs,
                      aperture=aperture, focal_spread=focal_spread, astigmatism=astigmatism,
                      astigmatism_angle=astigmatism_angle)
    return intensity if mtf is None else apply_mtf(intensity, mtf)
