"""Where each object ends: its edge grown by whole pixels where the data put it.

Pop-out's mask is cut where its thickness map leaves the noise, so a thin branch (or a weak
texture's object) loses its edge columns, and a missed column costs the material's whole
height. The image sees an edge sharply: the lens puts the object's Fresnel fringes at its
edge, and the texture-free model's fringes land where the modelled edge is. So every object's
edge is moved by each of :data:`MOVES` px, all objects at once (one forward pass per move), and
judged by the data loss of the residual low-passed by :data:`LOWPASS` Å (the texture's 2 Å
speckle averaged, the fringes kept) in the object's window.

Only growth is made, and only where it beats every move, inward ones included. A move in is
judged, never made: pop-out's soft-edged thickness map (a ramp, not a step) makes the loss
prefer dropping the thin rim even where it is true material. Measured on the accuracy suite
(seed 0, gaussian family) with moves in allowed: the discs' footprint IoU 0.75 -> 0.91, but
true rim columns went with the false ones, and the column height error rose on 9 of 13 frames
(df1500 8 -> 21 Å, spread30 21 -> 31 Å). Growth alone (the rule here): the dendrites' height
error 96 -> 70 Å (gaussian), 100 -> 75 Å (wide), 99 -> 78 Å (weak); the strong family's
overfocus discs 9.7 -> 7.1 Å, IoU 0.54 -> 0.60; discs, whose masks are too wide, unchanged.

A grown column takes the slabs (heights and thicknesses) of the object's nearest column; it
never touches another object's columns or growth (objects stay apart, whatever their gap).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from stream3d.refine.smoothing import gaussian_blur

#: px the edge moves (negative: the object grows). Each costs a forward pass. Only growth is
#: ever applied: a move in is judged (it vetoes a growth that shrinking would beat) but not
#: made, see the module doc.
MOVES = (-2, -1, 0, 1, 2, 3, 4)

#: Å, Gaussian width of the residual's low-pass: above the texture's 2 Å speckle, below the
#: 5-20 Å fringes an edge makes.
LOWPASS = 2.0


def moved_objects(column: np.ndarray, move: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask (ny, nx), source (ny, nx) flat index of the column whose slabs each masked column
    takes) of ``column`` (ny, nx, Å of material) with every object's edge moved ``move`` px in
    (> 0) or out (< 0). An object that would vanish keeps its own columns."""
    material = column > 0
    labels, count = ndimage.label(material)
    _, (iy, ix) = ndimage.distance_transform_edt(~material, return_indices=True)
    source = (iy * material.shape[1] + ix).astype(np.int64)
    if move == 0 or count == 0:
        return material, source
    if move > 0:
        # Objects are 4-connected, so the mask's erosion (4-neighbour) is each object's.
        kept = ndimage.binary_erosion(material, iterations=move, border_value=1)
        vanished = np.setdiff1d(np.arange(1, count + 1), np.unique(labels[kept]))
        return kept | np.isin(labels, vanished), source
    # Growth: a solvent column within -move px joins its nearest object, unless it touches
    # (8-neighbours) another object's columns or growth: objects stay apart.
    grown = ndimage.binary_dilation(material, iterations=-move) & ~material
    region = np.where(material, labels, np.where(grown, labels[iy, ix], 0))
    higher = ndimage.maximum_filter(region, size=3) > region
    lower = ndimage.minimum_filter(np.where(region > 0, region, count + 1), size=3) < region
    return material | ((region > 0) & ~higher & ~lower), source


@torch.no_grad()
def object_edges(centre: torch.Tensor, thickness: torch.Tensor,
                 build: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                 intensity: Callable[[torch.Tensor], torch.Tensor], measured: torch.Tensor,
                 *, pixel_size: float, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, thickness) (LAYERS, ny, nx) with every object's edge at its best move of
    :data:`MOVES` (only growth is made): ``build(centre, thickness, columns)`` makes the
    volume (material only in the flat ``columns``), ``intensity(volume)`` its image (vacuum =
    1), compared with ``measured`` after a :data:`LOWPASS` Å low-pass, summed over each
    object's window (its columns grown by the largest growth and ``pad`` px; the solvent
    between two objects counts for the nearer)."""
    column = thickness.sum(dim=0).cpu().numpy()
    material = column > 0
    labels, count = ndimage.label(material)
    if count == 0:
        return centre, thickness
    reach = max(-min(MOVES), 0) + pad
    # Each column counts for its nearest object's window (within reach).
    distance, (iy, ix) = ndimage.distance_transform_edt(~material, return_indices=True)
    windows = np.where(distance <= reach, labels[iy, ix], 0)
    index = torch.as_tensor(windows.ravel(), device=thickness.device, dtype=torch.long)
    sigma = LOWPASS / pixel_size
    ny, nx = column.shape
    # Only the columns some move fills are built (see slab_volume's ``columns``).
    columns = torch.as_tensor(np.flatnonzero(moved_objects(column, min(MOVES))[0]),
                              device=thickness.device)
    candidates, losses = [], []
    for move in MOVES:
        mask, source = moved_objects(column, move)
        flat_source = torch.as_tensor(source.ravel(), device=thickness.device)
        keep = torch.as_tensor(mask, device=thickness.device)
        moved_t = torch.where(keep, thickness.flatten(1)[:, flat_source].reshape(-1, ny, nx),
                              torch.zeros_like(thickness))
        moved_c = torch.where(keep, centre.flatten(1)[:, flat_source].reshape(-1, ny, nx),
                              torch.full_like(centre, float("nan")))
        residual = gaussian_blur(intensity(build(moved_c, moved_t, columns)) - measured,
                                 sigma).square()
        per_object = torch.zeros(count + 1, dtype=residual.dtype, device=residual.device)
        per_object.index_add_(0, index, residual.reshape(-1))
        candidates.append((moved_c, moved_t, mask))
        losses.append(per_object)
    best = torch.stack(losses).argmin(dim=0).cpu().numpy()  # (count + 1,)
    best = np.where(np.asarray(MOVES)[best] < 0, best, MOVES.index(0))
    # Each object's columns (and its grown ones: nearest object) from its best move.
    owner = torch.as_tensor(labels[iy, ix] * (distance <= reach), device=thickness.device)
    out_c, out_t = torch.full_like(centre, float("nan")), torch.zeros_like(thickness)
    for choice in np.unique(best[1:]):
        moved_c, moved_t, _ = candidates[int(choice)]
        chosen = torch.as_tensor(np.flatnonzero(best == choice), device=thickness.device)
        mine = torch.isin(owner, chosen) & (owner > 0)
        out_c = torch.where(mine[None], moved_c, out_c)
        out_t = torch.where(mine[None], moved_t, out_t)
    return out_c, out_t
