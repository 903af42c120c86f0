"""Heights as parameters of the refinement: one height shift per object region, fitted by the
spectral (Whittle) likelihood of :mod:`stream3d.refine.spectral`.

Regions: a compact object (radius of gyration at most half a :data:`REGION` cell) is one
region; a larger one (a plate, a dendrite) is split on the :data:`REGION` Å grid, each piece
its own region, so a tilted or bent object's height can vary across it. Pieces smaller than
:data:`MIN_PIXELS` carry too little texture to measure: they take the shift of the nearest
region of their object. The shift map is blended over :data:`BLEND` Å inside each object, so
neighbouring regions meet without a step; every slab of a column (both layers of a two-layer
column) moves by its column's shift, so the shape and the material prior are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from stream3d.refine import spectral

#: Å, edge of the grid cells a large object is split into (one height per cell).
REGION = 64.0

#: A region needs this many columns of material for its own height.
MIN_PIXELS = 150

#: Å, Gaussian width over which neighbouring regions' shifts are blended.
BLEND = 8.0

#: Å, the scale of pop-out's height errors that a region's move must overcome (the prior of
#: :func:`spectral.fit_shifts`): pop-out's median column height error over the accuracy
#: suite's texture families is 13-19 Å (20-26 Å on a held-out seed). Without it, regions of a
#: tilted plate moved by 90 and 150 Å on likelihood ratios of 10 and 11 (z ~ 3) where pop-out
#: was within 15 Å (texture families wide and weak). With it, moves better by >= 3 Å against
#: worse by > 3 Å went from 12:9 to 8:3 over the families and atoms; wide 20.4 -> 16.5 Å,
#: weak 36.7 -> 26.7 Å, peaked IoU 0.49 -> 0.56; narrow and atoms each lost a good move.
PRIOR = 20.0


@dataclass(frozen=True)
class RegionShifts:
    """The fitted shifts: ``shift`` (ny, nx) Å per column (0 in the solvent), ``fit`` the
    per-region :class:`spectral.HeightFit`, ``labels`` (ny, nx) the regions (0 = none)."""

    shift: np.ndarray
    fit: spectral.HeightFit | None
    labels: np.ndarray
    texture: tuple[float, ...]


#: Å: neighbouring columns whose heights differ by more belong to different objects (two
#: discs at different heights that touch or overlap are not one object whose height is fitted
#: as one: their texture rings are of two heights).
JUMP = 60.0


def height_objects(material: np.ndarray, height: np.ndarray | None,
                   layers: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Objects (ny, nx) 1..count of a column mask: connected columns, split where the
    column ``height`` (Å) jumps by more than :data:`JUMP` between neighbours and between
    columns holding one and two slabs (``layers`` (ny, nx) bool: two)."""
    if height is None:
        return ndimage.label(material)
    h = np.where(material, height, np.nan)
    big, small = np.where(material, h, -np.inf), np.where(material, h, np.inf)
    jump = (ndimage.maximum_filter(big, size=3) - ndimage.minimum_filter(small, size=3)) > JUMP
    core = material & ~jump
    if layers is not None:
        both = material & layers
        edge = ndimage.binary_dilation(both) & ~both | ndimage.binary_dilation(~both) & both
        core &= ~edge
    objects, count = ndimage.label(core)
    if count == 0:
        return ndimage.label(material)
    # Boundary columns join the nearest core object.
    _, (iy, ix) = ndimage.distance_transform_edt(objects == 0, return_indices=True)
    return np.where(material, objects[iy, ix], 0), count


def height_regions(material: np.ndarray, pixel_size: float, height: np.ndarray | None = None,
                   layers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(regions (ny, nx) 1..count, objects (ny, nx), count) of a column mask ``material``
    (objects from :func:`height_objects`)."""
    objects, n_objects = height_objects(material, height, layers)
    labels = np.zeros(material.shape, dtype=np.int64)
    cell = max(int(round(REGION / pixel_size)), 1)
    ny, nx = material.shape
    cells = (np.arange(ny)[:, None] // cell) * (nx // cell + 1) + np.arange(nx)[None, :] // cell
    count = 0
    for obj in range(1, n_objects + 1):
        own = objects == obj
        ys, xs = np.nonzero(own)
        if np.sqrt(ys.var() + xs.var()) <= 0.5 * cell:
            pieces = [own]
        else:
            pieces = [own & (cells == c) for c in np.unique(cells[own])]
        for piece in pieces:
            if piece.sum() >= MIN_PIXELS:
                count += 1
                labels[piece] = count
    return labels, objects, count


def shift_map(labels: np.ndarray, objects: np.ndarray, shifts: np.ndarray,
              pixel_size: float) -> np.ndarray:
    """(ny, nx) Å: each region's shift on its columns, the nearest region's (same object) on
    pieces without one, blended over :data:`BLEND` Å within each object; 0 in the solvent."""
    out = np.zeros(labels.shape)
    for obj in np.unique(objects[objects > 0]):
        own = objects == obj
        mine = own & (labels > 0)
        if not mine.any():
            continue
        _, (iy, ix) = ndimage.distance_transform_edt(~mine, return_indices=True)
        nearest = labels[iy, ix]
        values = np.where(own, np.concatenate([[0.0], shifts])[nearest], 0.0)
        sigma = BLEND / pixel_size
        blurred = ndimage.gaussian_filter(values, sigma)
        weight = ndimage.gaussian_filter(own.astype(np.float64), sigma)
        out[own] = (blurred / np.maximum(weight, 1e-6))[own]
    return out


def region_spectra(measured: torch.Tensor, modelled: torch.Tensor, occupancy: torch.Tensor,
                   *, dz: float, lens: spectral.Lens, counts_per_unit: float,
                   band: tuple[float, float], potential: float
                   ) -> tuple[spectral.Regions | None, np.ndarray, np.ndarray, spectral.Lens]:
    """(the regions' spectra for the Whittle likelihood, or None without material; region
    labels (ny, nx); objects (ny, nx); the lens with the texture spectrum used).

    ``measured`` (ny, nx) intensity (vacuum = 1); ``modelled`` the texture-free model's image of
    the start volume (its residual carries the texture); ``occupancy`` (nz, ny, nx) in [0, 1]
    of the start; ``lens`` with the texture spectrum measured by pop-out (FLAT: measured here
    from the regions' own spectra); ``potential`` V of the material."""
    pixel_size = lens.optics.pixel_size
    occ = occupancy.detach().double().cpu().numpy()
    material = (occ > 0).any(axis=0)
    nz = occ.shape[0]
    seen = (nz - np.arange(nz)) * dz  # a slice's material is seen at its top face
    with np.errstate(invalid="ignore", divide="ignore"):
        height = (occ * seen[:, None, None]).sum(axis=0) / occ.sum(axis=0)
    present = occ > 1e-6
    runs = (present[1:] & ~present[:-1]).sum(axis=0) + present[0]
    labels, objects, count = height_regions(material, pixel_size, height, runs >= 2)
    if count == 0:
        return None, labels, objects, lens
    size = spectral.crop_size(pixel_size, REGION, tuple(material.shape),
                              spectral.grow_px(lens, seen, band))
    regions = spectral.build_regions(measured - modelled, measured, labels, count, occupancy,
                                     seen, lens, counts_per_unit=counts_per_unit, band=band,
                                     size=size, potential=potential)
    if not lens.optics.texture:
        lens = spectral.Lens(replace(lens.optics, texture=spectral.measured_texture(
            regions, lens, band)), lens.defocus)
        regions = spectral.with_texture(regions, lens)
    return regions, labels, objects, lens


def fit_region_shifts(measured: torch.Tensor, modelled: torch.Tensor, occupancy: torch.Tensor,
                      *, dz: float, lens: spectral.Lens, counts_per_unit: float,
                      band: tuple[float, float], potential: float, limit: float,
                      significance: float, prior: float = PRIOR,
                      sign: float = 1.0) -> RegionShifts:
    """Fit every region's height shift (Å) from the frame's texture spectra (inputs as
    :func:`region_spectra`). Shifts beyond +-``limit`` Å are not searched; a shift whose
    likelihood ratio less (shift / ``prior``)^2 is below ``significance``^2 is 0."""
    regions, labels, objects, lens = region_spectra(
        measured, modelled, occupancy, dz=dz, lens=lens, counts_per_unit=counts_per_unit,
        band=band, potential=potential)
    if regions is None:
        return RegionShifts(np.zeros(labels.shape), None, labels, lens.optics.texture)
    fit = spectral.fit_shifts(regions, limit=limit, significance=significance, prior=prior,
                              sign=sign)
    return RegionShifts(shift_map(labels, objects, fit.shift, lens.optics.pixel_size), fit,
                        labels, lens.optics.texture)


def moved_centres(centre: torch.Tensor, shift: np.ndarray) -> torch.Tensor:
    """Slab centres (LAYERS, ny, nx) Å moved up by ``shift`` (ny, nx) Å (NaN stays absent)."""
    return centre + torch.as_tensor(shift, dtype=centre.dtype, device=centre.device)[None]

