"""Support membranes (``sample.membranes``) for the simulator: amorphous layers across the field.

A membrane is a laterally uniform slab of amorphous material at a known height: the window of
a heating/biasing chip under the specimen, or the two windows of a liquid or gas cell. It has
its own texture (a family of :mod:`stream3d.specimen.texture`, drawn once per movie: the
membrane does not change between frames) and fills every column, so its Thon rings are
everywhere. Where an object overlaps it, the object's material replaces it (one material per
voxel, as in the occupancy model).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream3d.config import Membrane, Sample
from stream3d.specimen.geometry import slab_profile
from stream3d.specimen.texture import amorphous_texture


def membrane_profile(membrane: Membrane, nz: int, dz: float) -> np.ndarray:
    """Fraction (nz,) float32 of each slice (slice 0 the entrance) the membrane fills."""
    return slab_profile(nz, dz, np.asarray(membrane.bottom), np.asarray(membrane.top))


def membranes_profile(sample: Sample) -> np.ndarray:
    """Fraction (slices,) float32 of each slice filled by any of ``sample.membranes`` (0 if
    none): the truth of the background layers, laterally uniform."""
    out = np.zeros(sample.slices, dtype=np.float32)
    for membrane in sample.membranes:
        out += membrane_profile(membrane, sample.slices, sample.slice_thickness)
    return np.clip(out, 0.0, 1.0)


def _span(profile: np.ndarray) -> slice:
    """The slices a profile touches (> 0)."""
    where = np.nonzero(profile > 0)[0]
    return slice(int(where[0]), int(where[-1]) + 1)


def membrane_textures(sample: Sample, ny: int, nx: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One unit-rms texture field per membrane, only over the slices it touches (z', y, x),
    from its own texture family (None keys: the sample's)."""
    fields = []
    for membrane in sample.membranes:
        span = _span(membrane_profile(membrane, sample.slices, sample.slice_thickness))
        length = membrane.texture_length or sample.texture_length
        spectrum = membrane.texture_spectrum or sample.texture_spectrum
        fields.append(amorphous_texture((span.stop - span.start, ny, nx), sample.sampling,
                                        length=length, rng=rng, spectrum=spectrum))
    return tuple(fields)


def add_membranes(potential: np.ndarray, occupancy: np.ndarray, sample: Sample, *,
                  rng: np.random.Generator | None = None,
                  fields: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``potential`` (z, y, x) complex64 V of the objects with ``sample.membranes`` added, in
    place: V_m x fraction x (1 - occupancy) x (1 + texture_m x field) x (1 + i absorption).

    ``fields`` (from :func:`membrane_textures`, e.g. drawn once for a movie) or ``rng`` to
    draw them. Returns ``potential`` unchanged when there is no membrane.
    """
    if not sample.membranes:
        return potential
    ny, nx = occupancy.shape[-2:]
    if fields is None:
        if rng is None:
            raise ValueError("add_membranes needs rng or fields for the membranes' texture")
        fields = membrane_textures(sample, ny, nx, rng)
    for membrane, field in zip(sample.membranes, fields, strict=True):
        profile = membrane_profile(membrane, sample.slices, sample.slice_thickness)
        span = _span(profile)
        strength = sample.texture if membrane.texture is None else membrane.texture
        real = (np.float32(membrane.potential) * profile[span, None, None]
                * (1.0 - occupancy[span]) * (1.0 + np.float32(strength) * field))
        potential[span] += (real + 1j * np.float32(sample.absorption) * real).astype(np.complex64)
    return potential
