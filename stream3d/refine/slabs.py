"""Columns of up to two homogeneous slabs, and the differentiable volume they make.

The refinement's shape representation: every column holds at most two slabs of material at
the known potential (the material prior: occupancy 0 or 1), each with a centre height and a
thickness in Å, so two overlapping layers keep their own heights. Slab edges cover partial
slices, as in :func:`stream3d.specimen.geometry.slab_profile`, so the volume is differentiable
in the thicknesses and a column's projected potential is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stream3d.specimen.geometry import slice_centres

#: Slabs per column.
LAYERS = 2


@dataclass(frozen=True)
class ColumnSlabs:
    """(LAYERS, ny, nx) centre heights (Å above the exit plane; NaN where a slab is absent) and
    thicknesses (Å; 0 where absent). Layer 0 is each column's top slab."""

    centre: np.ndarray
    thickness: np.ndarray

    @property
    def column_thickness(self) -> np.ndarray:
        return self.thickness.sum(axis=0)


def column_slabs(volume: np.ndarray, *, potential: float, dz: float) -> ColumnSlabs:
    """The slabs of a volume (nz, ny, nx) in V read as material of ``potential``: each column's
    runs of occupied slices, top first; a third run and beyond join the second."""
    occ = np.clip(np.real(np.asarray(volume, dtype=np.float64)) / potential, 0.0, 1.0)
    nz = occ.shape[0]
    present = occ > 1e-6
    starts = present.copy()
    starts[1:] &= ~present[:-1]
    run = np.minimum(np.cumsum(starts, axis=0), LAYERS) * present
    heights = slice_centres(nz, dz)[:, None, None]
    centre = np.full((LAYERS, *occ.shape[1:]), np.nan)
    thickness = np.zeros((LAYERS, *occ.shape[1:]))
    for k in range(LAYERS):
        part = np.where(run == k + 1, occ, 0.0)
        mass = part.sum(axis=0)
        thickness[k] = mass * dz
        with np.errstate(invalid="ignore", divide="ignore"):
            centre[k] = np.where(mass > 0, (heights * part).sum(axis=0) / mass, np.nan)
    return ColumnSlabs(centre, thickness)


def slab_volume(centre: torch.Tensor, thickness: torch.Tensor, *, nz: int, dz: float,
                potential: float, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Real potential (nz, ny, nx) V of slabs with ``centre`` (Å, NaN = absent) and
    ``thickness`` (Å) of shape (LAYERS, ny, nx); differentiable in both. A slab that would
    stick out of the cell is shifted in (thickness kept), overlapping slabs saturate.

    ``columns`` (ny*nx,) long: the flat indices of the only columns that may hold material
    (elsewhere the volume is 0, whatever ``thickness`` says). Why: the slabs' coverage of
    every slice is a (LAYERS, nz, columns) computation, whose forward and backward cost more
    than the multislice pass itself on a whole frame (measured 3.5 forward passes per
    refinement iteration at 256² x 32, most of it on empty columns)."""
    _, ny, nx = thickness.shape
    if columns is None:
        return _coverage(centre, thickness, nz, dz) * potential
    occupancy = _coverage(centre.flatten(1)[:, columns], thickness.flatten(1)[:, columns],
                          nz, dz)  # (nz, M)
    flat = occupancy.new_zeros((nz, ny * nx)).index_copy(1, columns, occupancy)
    return flat.reshape(nz, ny, nx) * potential


def _coverage(centre: torch.Tensor, thickness: torch.Tensor, nz: int, dz: float
              ) -> torch.Tensor:
    """Occupancy (nz, ...) in [0, 1] of slabs ``centre``, ``thickness`` (LAYERS, ...) Å."""
    depth = nz * dz
    t = thickness.clamp(0.0, depth)
    c = torch.nan_to_num(centre, nan=depth / 2)
    c = torch.minimum(torch.maximum(c, t / 2), depth - t / 2)
    bottom, top = (c - t / 2)[:, None], (c + t / 2)[:, None]  # (LAYERS, 1, ...)
    face = (nz - 1 - torch.arange(nz, device=c.device, dtype=c.dtype)) * dz
    face = face.reshape(1, nz, *[1] * (t.dim() - 1))  # each slice's bottom face, Å
    covered = (torch.minimum(top, face + dz) - torch.maximum(bottom, face)).clamp(0.0, dz)
    return (covered.sum(dim=0) / dz).clamp(max=1.0)
