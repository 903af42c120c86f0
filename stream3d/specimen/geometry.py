"""Where slices sit along the beam, and per-column height / thickness of an occupancy map.

Heights are measured upward from the exit plane (Å). Slice 0 is the entrance (top): with ``nz``
slices of ``dz`` Å, slice i spans heights [(nz - i - 1) dz, (nz - i) dz] and its centre is at
(nz - i - 0.5) dz. Note for model fitting: the multislice model applies slice i's phase at the
slice's top face, so thin material in slice i is imaged as if at height (nz - i) dz, i.e. dz/2
above the slice centre used here for ground truth.
"""

from __future__ import annotations

import numpy as np


def slice_centres(nz: int, dz: float) -> np.ndarray:
    """Height (Å) of each slice's centre above the exit plane, slice 0 first (largest)."""
    return (nz - np.arange(nz) - 0.5) * dz


def height_to_slice(height: np.ndarray | float, nz: int, dz: float) -> np.ndarray:
    """Fractional slice index whose centre is at ``height`` Å (inverse of :func:`slice_centres`)."""
    return nz - 0.5 - np.asarray(height, dtype=np.float64) / dz


def least_column(dz: float) -> float:
    """The material prior's thinnest column (Å): half a slice (what counts as a column of
    material), plus 1e-3 Å so that float32 slab edges, placed up to 640 Å deep, still add up
    to at least half a slice."""
    return dz / 2 + 1e-3


def column_thickness(occupancy: np.ndarray, dz: float) -> np.ndarray:
    """Material thickness (Å) of every (y, x) column: sum of occupancy x dz."""
    return np.asarray(occupancy, dtype=np.float64).sum(axis=-3) * dz


def column_height(occupancy: np.ndarray, dz: float) -> np.ndarray:
    """Centre-of-mass height (Å) above the exit plane of every column; NaN where empty."""
    occ = np.asarray(occupancy, dtype=np.float64)
    mass = occ.sum(axis=-3)
    weighted = np.tensordot(slice_centres(occ.shape[-3], dz), occ, axes=([0], [-3]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, weighted / np.where(mass > 0, mass, 1), np.nan)


def slab_profile(nz: int, dz: float, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Occupancy (z, ...) of material filling heights [bottom, top] Å in each column.

    Partial slices get the covered fraction: thickness is exact, the centre of mass is right
    to a small fraction of a slice.
    ``bottom`` and ``top`` broadcast to the column shape.
    """
    bottom = np.asarray(bottom, dtype=np.float64)
    top = np.asarray(top, dtype=np.float64)
    lo = (nz - np.arange(nz) - 1.0) * dz  # bottom face of each slice
    shape = (nz,) + (1,) * np.broadcast(bottom, top).ndim
    lo = lo.reshape(shape)
    covered = np.clip(np.minimum(top, lo + dz) - np.maximum(bottom, lo), 0.0, dz)
    return (covered / dz).astype(np.float32)
