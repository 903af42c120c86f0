"""Simple specimens with exact geometry for unit checks: discs, a tilted slab, two layers.

Every function returns an occupancy map (z, y, x), float32 in [0, 1], on a grid of ``shape``
voxels sampled at ``sampling`` = (dz, dy, dx) Å. Heights are above the exit plane (Å); see
:mod:`stream3d.specimen.geometry` for where slices sit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream3d.specimen.geometry import slab_profile


@dataclass(frozen=True)
class Disc:
    """A flat disc of material: centre (y, x) Å, radius Å, centre height Å, thickness Å."""

    y: float
    x: float
    radius: float
    height: float
    thickness: float


def _check_grid(shape: Sequence[int], sampling: Sequence[float]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"shape must be 3 positive sizes (z, y, x), got {tuple(shape)}")
    if len(sampling) != 3 or any(not (float(d) > 0) for d in sampling):
        raise ValueError(f"sampling must be 3 positive steps (dz, dy, dx) Å, got {tuple(sampling)}")
    return tuple(int(n) for n in shape)


def _lateral_grid(shape, sampling):
    _, ny, nx = shape
    _, dy, dx = sampling
    yy, xx = np.meshgrid((np.arange(ny) + 0.5) * dy, (np.arange(nx) + 0.5) * dx, indexing="ij")
    return yy, xx


def discs(shape: Sequence[int], sampling: Sequence[float], items: Sequence[Disc]) -> np.ndarray:
    """Occupancy of flat discs; overlapping discs saturate at 1."""
    shape = _check_grid(shape, sampling)
    dz = float(sampling[0])
    yy, xx = _lateral_grid(shape, sampling)
    occ = np.zeros(shape, dtype=np.float32)
    for d in items:
        inside = (yy - d.y) ** 2 + (xx - d.x) ** 2 <= d.radius**2
        profile = slab_profile(shape[0], dz, d.height - d.thickness / 2, d.height + d.thickness / 2)
        occ += profile[:, None, None] * inside[None]
    return np.clip(occ, 0.0, 1.0)


def three_discs(shape: Sequence[int], sampling: Sequence[float], *,
                heights: Sequence[float] | None = None, thickness: float = 80.0) -> np.ndarray:
    """The standard check specimen: three discs of ``thickness`` Å at three heights.

    Default heights are 20 %, 50 % and 80 % of the cell depth; radii are 18 % of the field.
    """
    shape = _check_grid(shape, sampling)
    return discs(shape, sampling, three_disc_items(shape, sampling, heights=heights,
                                                   thickness=thickness))


def three_disc_items(shape: Sequence[int], sampling: Sequence[float], *,
                     heights: Sequence[float] | None = None, thickness: float = 80.0) -> list[Disc]:
    """The :class:`Disc` list behind :func:`three_discs` (for ground-truth comparisons)."""
    nz, ny, nx = shape
    dz, dy, dx = sampling
    depth = nz * dz
    if heights is None:
        heights = (0.2 * depth, 0.5 * depth, 0.8 * depth)
    fy, fx = ny * dy, nx * dx
    radius = 0.18 * min(fy, fx)
    centres = [(0.28 * fy, 0.27 * fx), (0.28 * fy, 0.73 * fx), (0.74 * fy, 0.5 * fx)]
    return [Disc(y, x, radius, h, thickness) for (y, x), h in zip(centres, heights)]


def tilted_slab(shape: Sequence[int], sampling: Sequence[float], *, height_left: float,
                height_right: float, thickness: float, margin: float = 0.1) -> np.ndarray:
    """A slab whose centre height rises linearly from ``height_left`` to ``height_right`` Å
    across x; it fills the field except a ``margin`` (fraction) of solvent on every side."""
    shape = _check_grid(shape, sampling)
    dz = float(sampling[0])
    yy, xx = _lateral_grid(shape, sampling)
    fy, fx = shape[1] * sampling[1], shape[2] * sampling[2]
    inside = ((yy > margin * fy) & (yy < (1 - margin) * fy)
              & (xx > margin * fx) & (xx < (1 - margin) * fx))
    centre = height_left + (height_right - height_left) * xx / fx
    occ = slab_profile(shape[0], dz, centre - thickness / 2, centre + thickness / 2)
    return occ * inside[None]


def two_layers(shape: Sequence[int], sampling: Sequence[float], *, heights: Sequence[float],
               thickness: float) -> np.ndarray:
    """Two overlapping square layers at two heights: left-hand one low, right-hand one high,
    overlapping in a central band (where a column holds material at both heights)."""
    shape = _check_grid(shape, sampling)
    dz = float(sampling[0])
    yy, xx = _lateral_grid(shape, sampling)
    fy, fx = shape[1] * sampling[1], shape[2] * sampling[2]
    rows = (yy > 0.2 * fy) & (yy < 0.8 * fy)
    left = rows & (xx > 0.1 * fx) & (xx < 0.6 * fx)
    right = rows & (xx > 0.4 * fx) & (xx < 0.9 * fx)
    occ = np.zeros(shape, dtype=np.float32)
    for mask, h in ((left, heights[0]), (right, heights[1])):
        profile = slab_profile(shape[0], dz, h - thickness / 2, h + thickness / 2)
        occ += profile[:, None, None] * mask[None]
    return np.clip(occ, 0.0, 1.0)
