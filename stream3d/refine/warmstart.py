"""Warm starts: frame t starts from frame t-1's depths, except where the scene changed.

In a movie consecutive frames differ little (a dendrite grows a few Å per frame), so the
previous refined depths are a good start: they have been searched and fitted. They are not
free of error, though, and a refinement only corrects its start locally, so a start taken from
the previous frame alone carries a bad frame's errors on through the movie. Pop-out's depths
are an independent measurement on the new frame, so the warm start averages the two
(``blend`` weighs the previous frame; a Kalman-like update with comparable errors). Pop-out's
thickness map is measured on the new frame too and already holds the new growth, and taking it
afresh every frame keeps shape errors from piling up. Measured on a 10-frame growing-dendrite
movie (benchmarks/warm_start.py): the previous heights alone gave 20 Å mean depth error against
16.7 Å for cold starts; the blend 0.5 gave 15.6 Å in half the iterations. Pop-out's height
errors come mostly from the material's own texture, which a growing specimen keeps from frame
to frame, so they repeat rather than average out, and a grown object's new fit uses more
pixels: the default blend is 0.25 (on the accuracy suite's 8-frame movie, warm 30.0 Å against
cold 30.2 Å; with 0.5, 30.5 Å; on the 128 px movie above both blends beat cold).

Where the scene changed (a new particle, a jump of the stage, a different field), the previous
volume explains the new frame much worse than it explained its own: its local data loss rises
well above the loss it left on the previous frame. Those tiles keep pop-out's heights; when
most of the field changed, the whole frame starts cold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stream3d.refine.losses import loss_map
from stream3d.refine.model import ImagingModel
from stream3d.refine.slabs import column_slabs, slab_volume

#: Above this fraction of changed tiles the frame counts as a new scene: a cold start.
NEW_SCENE_FRACTION = 0.5


@dataclass(frozen=True)
class WarmStart:
    """The start volume (nz, ny, nx) V, whether it is warm, the fraction of the field whose
    scene changed and those columns (ny, nx)."""

    volume: np.ndarray
    warm: bool
    changed: float
    mask: np.ndarray


def tile_means(values: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` (ny, nx) over size x size tiles (edge tiles may be smaller)."""
    ny, nx = values.shape
    ty, tx = -(-ny // size), -(-nx // size)
    padded = np.full((ty * size, tx * size), np.nan)
    padded[:ny, :nx] = values
    return np.nanmean(padded.reshape(ty, size, tx, size), axis=(1, 3))


@torch.no_grad()
def residual_map(measured: torch.Tensor, volume: np.ndarray, model: ImagingModel, *,
                 kind: str) -> np.ndarray:
    """Per-pixel data loss (ny, nx) of a volume against a dose-normalised frame."""
    v = torch.as_tensor(volume, dtype=torch.float32, device=measured.device)
    return loss_map(kind)(model.intensity(v), measured, model.counts_per_unit).cpu().numpy()


def changed_columns(measured: torch.Tensor, previous: np.ndarray, model: ImagingModel, *,
                    kind: str, reference: np.ndarray, threshold: float,
                    tile: int) -> np.ndarray:
    """Columns (ny, nx) of the tiles where ``previous``'s loss on the new frame exceeds
    ``threshold`` x ``reference``, its per-pixel loss on its own frame."""
    residual = residual_map(measured, previous, model, kind=kind)
    changed = tile_means(residual.astype(np.float64), tile) > threshold * tile_means(
        np.asarray(reference, np.float64), tile)
    ny, nx = measured.shape
    return np.kron(changed, np.ones((tile, tile), dtype=bool))[:ny, :nx]


def merged_start(previous: np.ndarray, popout: np.ndarray, changed: np.ndarray, *,
                 potential: float, dz: float, blend: float = 0.5) -> np.ndarray:
    """Homogeneous material (nz, ny, nx) V with pop-out's slabs and thicknesses, each
    single-slab column's height at blend x previous + (1 - blend) x pop-out's where the
    previous volume had one slab there too and the scene did not change (pop-out's alone
    elsewhere: new growth, two layers, a changed scene)."""
    nz = np.shape(popout)[0]
    prev = column_slabs(previous, potential=potential, dz=dz)
    pop = column_slabs(popout, potential=potential, dz=dz)

    def single(slabs):
        return (slabs.thickness[0] > 0) & (slabs.thickness[1] == 0)

    keep = single(prev) & single(pop) & ~np.asarray(changed, dtype=bool)
    centre = pop.centre.copy()
    centre[0] = np.where(keep, blend * prev.centre[0] + (1.0 - blend) * pop.centre[0],
                         pop.centre[0])
    volume = slab_volume(torch.as_tensor(centre), torch.as_tensor(pop.thickness), nz=nz, dz=dz,
                         potential=potential)
    return volume.numpy().astype(np.float32)


def warm_start(measured: torch.Tensor, previous: np.ndarray, popout: np.ndarray,
               model: ImagingModel, *, kind: str, reference: np.ndarray, threshold: float,
               tile: int, blend: float = 0.5) -> WarmStart:
    """The start for a new frame from the previous volume and pop-out's (see the module doc).

    ``reference`` is the per-pixel loss the previous volume left on its own frame; tiles of
    ``tile`` pixels where its loss on the new frame exceeds ``threshold`` x that changed.
    """
    mask = changed_columns(measured, previous, model, kind=kind, reference=reference,
                           threshold=threshold, tile=tile)
    ny, nx = mask.shape
    ty, tx = -(-ny // tile), -(-nx // tile)
    changed = float(mask[::tile, ::tile].sum()) / (ty * tx)
    if changed > NEW_SCENE_FRACTION:
        return WarmStart(np.asarray(popout, dtype=np.float32), False, changed, mask)
    volume = merged_start(previous, popout, mask, potential=model.potential, dz=model.dz,
                          blend=blend)
    return WarmStart(volume, True, changed, mask)
