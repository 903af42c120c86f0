"""Depth and thickness maps -> the initial 3D volume on the config's (slices, y, x) grid."""

from __future__ import annotations

import numpy as np


def column_bounds(height: np.ndarray, thickness: np.ndarray, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """(bottom, top) Å of material of ``thickness`` centred at ``height``, kept inside the cell
    [0, ``depth``] Å: a slab that would stick out is shifted in (thickness kept, capped at
    the cell depth), so the centre of mass moves as little as possible."""
    t = np.clip(thickness, 0.0, depth)
    centre = np.clip(height, t / 2, depth - t / 2)
    return centre - t / 2, centre + t / 2


def build_volume(height: np.ndarray, thickness: np.ndarray, *, slices: int, slice_thickness: float,
                 potential: float) -> np.ndarray:
    """Real potential (V) float32 (slices, y, x): ``potential`` V where material is, partial
    slices getting the covered fraction (so each column's thickness is exact), as in
    :func:`stream3d.specimen.geometry.slab_profile` (slice 0 is the top)."""
    bottom, top = column_bounds(height, thickness, slices * slice_thickness)
    lo, hi = bottom.astype(np.float32), top.astype(np.float32)  # solvent: lo == hi, covers 0
    volume = np.empty((slices, *lo.shape), dtype=np.float32)
    below = np.empty_like(lo)
    for i in range(slices):  # slice by slice, in place: no (slices, y, x) temporaries
        face = np.float32((slices - i - 1) * slice_thickness)  # bottom face of slice i
        covered = volume[i]
        np.minimum(hi, face + np.float32(slice_thickness), out=covered)
        covered -= np.maximum(lo, face, out=below)
        np.clip(covered, 0.0, slice_thickness, out=covered)
        covered *= np.float32(potential / slice_thickness)
    return volume



def layered_volume(height: np.ndarray, thickness: np.ndarray, layers, *, slices: int,
                   slice_thickness: float, potential: float) -> np.ndarray:
    """:func:`build_volume`, except that the columns in ``layers.where`` (a
    :class:`stream3d.popout.layers.Layers`, or None for none) hold two slabs, at ``layers.top``
    and ``layers.bottom`` Å, sharing the column's thickness by ``layers.top_share``."""
    grid = dict(slices=slices, slice_thickness=slice_thickness, potential=potential)
    if layers is None:
        return build_volume(height, thickness, **grid)
    stacked = layers.where
    share = np.clip(layers.top_share, 0.0, 1.0)
    volume = build_volume(height, np.where(stacked, 0.0, thickness), **grid)
    volume += build_volume(layers.top, np.where(stacked, share * thickness, 0.0), **grid)
    volume += build_volume(layers.bottom, np.where(stacked, (1 - share) * thickness, 0.0), **grid)
    return np.minimum(volume, np.float32(potential))
