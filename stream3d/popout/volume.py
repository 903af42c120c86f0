"""Depth and thickness maps -> the initial 3D volume on the config's (slices, y, x) grid."""

from __future__ import annotations

import numpy as np

from stream3d.specimen.geometry import slab_profile


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
    slices getting the covered fraction (so each column's thickness is exact)."""
    bottom, top = column_bounds(height, thickness, slices * slice_thickness)
    occupancy = slab_profile(slices, slice_thickness, bottom, top)
    return (occupancy * np.float32(potential)).astype(np.float32, copy=False)
