"""Material along z: slabs from per-column height and thickness, and shift/scale of a volume.

Heights are in Å above the exit plane; slice i (0 = entrance) spans [(nz-i-1) dz, (nz-i) dz]
(see :mod:`stream3d.specimen.geometry`). Every function is differentiable torch on the input's
device, and exact for partial slices: a slice holds the fraction of it the material covers.
"""

from __future__ import annotations

import torch


def slice_bottoms(nz: int, dz: float, like: torch.Tensor) -> torch.Tensor:
    """Bottom face height (Å) of each slice, slice 0 first, shaped (nz, 1, 1) like ``like``."""
    i = torch.arange(nz, dtype=like.dtype, device=like.device)
    return ((nz - i - 1.0) * dz).reshape(nz, 1, 1)


def slab_occupancy(height: torch.Tensor, thickness: torch.Tensor, nz: int,
                   dz: float) -> torch.Tensor:
    """Occupancy (nz, ny, nx) in [0, 1] of material filling [height - t/2, height + t/2].

    ``height`` (centre) and ``thickness`` are (ny, nx) maps in Å. Gradients flow to both through
    the slices that hold the slab's faces.
    """
    lo = slice_bottoms(nz, dz, height)
    top = height + 0.5 * thickness
    bottom = height - 0.5 * thickness
    covered = torch.minimum(top, lo + dz) - torch.maximum(bottom, lo)
    return covered.clamp(0.0, dz) / dz


def column_mass(volume: torch.Tensor) -> torch.Tensor:
    """Sum over z of a (nz, ny, nx) volume: the projected value per column (V x slices)."""
    return volume.sum(dim=0)


def column_centre(volume: torch.Tensor, dz: float) -> torch.Tensor:
    """Centre-of-mass height (Å) of every column of a non-negative volume; NaN where empty."""
    nz = volume.shape[0]
    centres = slice_bottoms(nz, dz, volume) + 0.5 * dz
    mass = volume.sum(dim=0)
    weighted = (volume * centres).sum(dim=0)
    return torch.where(mass > 0, weighted / mass.clamp_min(1e-30),
                       torch.full_like(mass, float("nan")))


def shift_scale_z(volume: torch.Tensor, *, shift: float | torch.Tensor,
                  scale: float | torch.Tensor, centre: float | torch.Tensor,
                  dz: float) -> torch.Tensor:
    """The volume moved along z: material at height z goes to centre + shift + (z - centre) scale.

    ``shift`` (Å), ``scale`` (> 0) and ``centre`` (Å) are numbers or (ny, nx) maps. Each new
    slice gets the exact average of the old, piecewise-constant profile over the heights that
    map into it, so a slab stays a slab (thickness x scale) and a column's projected potential
    is multiplied by ``scale``; material moved out of the cell is lost.
    """
    nz, ny, nx = volume.shape
    depth = nz * dz
    # Cumulative integral of V from the exit plane (bottom) up, at the nz + 1 slice faces.
    bottom_first = volume.flip(0)
    cumulative = torch.cat([volume.new_zeros(1, ny, nx), torch.cumsum(bottom_first, 0) * dz])
    faces = torch.arange(nz + 1, dtype=volume.dtype, device=volume.device).reshape(-1, 1, 1) * dz
    shift, scale, centre = (torch.as_tensor(v, dtype=volume.dtype, device=volume.device)
                            for v in (shift, scale, centre))
    source = (centre + (faces - centre - shift) / scale).clamp(0.0, depth)
    source = source.expand(nz + 1, ny, nx)
    index = (source / dz).floor().clamp(0, nz - 1)
    frac = source / dz - index
    index = index.long()
    lower = torch.gather(cumulative, 0, index)
    upper = torch.gather(cumulative, 0, index + 1)
    at_faces = lower + frac * (upper - lower)
    new_bottom_first = (at_faces[1:] - at_faces[:-1]) * scale / dz
    return new_bottom_first.flip(0)
