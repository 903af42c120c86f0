"""Warm starts: frame t starts from frame t-1's volume, except where the scene changed.

In a movie consecutive frames differ little (a dendrite grows a few Å per frame), so the
previous volume is a far better start than pop-out: its support is sharp and its depths have
been searched. Where the scene changed (a new particle, a jump of the stage, a different
field), the previous volume explains the new frame badly: its local data loss rises well above
what the right volume would leave. Those tiles take pop-out's volume instead; when most of the
field changed, the whole frame starts cold from pop-out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stream3d.refine.losses import loss_map
from stream3d.refine.model import ImagingModel

#: Above this fraction of changed tiles the frame counts as a new scene: a cold start.
NEW_SCENE_FRACTION = 0.5


@dataclass(frozen=True)
class WarmStart:
    """The start volume (nz, ny, nx) V, whether it is warm, and the fraction of the field that
    was replaced by pop-out."""

    volume: np.ndarray
    warm: bool
    changed: float


def tile_means(values: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` (ny, nx) over size x size tiles (edge tiles may be smaller)."""
    ny, nx = values.shape
    ty, tx = -(-ny // size), -(-nx // size)
    padded = np.full((ty * size, tx * size), np.nan)
    padded[:ny, :nx] = values
    return np.nanmean(padded.reshape(ty, size, tx, size), axis=(1, 3))


@torch.no_grad()
def warm_start(measured: torch.Tensor, previous: np.ndarray, popout: np.ndarray,
               model: ImagingModel, *, kind: str, expected: float, threshold: float,
               tile: int) -> WarmStart:
    """Combine the previous volume and pop-out's for a new frame.

    ``measured`` is the dose-normalised frame; ``expected`` the data loss the right volume would
    leave (per pixel, same ``kind`` of loss). Tiles of ``tile`` pixels where the previous
    volume's mean loss exceeds ``threshold`` x ``expected`` are replaced by pop-out's columns.
    """
    device = measured.device
    prev = torch.as_tensor(previous, dtype=torch.float32, device=device)
    residual = loss_map(kind)(model.intensity(prev), measured, model.counts_per_unit)
    per_tile = tile_means(residual.cpu().numpy().astype(np.float64), tile)
    changed_tiles = per_tile > threshold * expected
    changed = float(changed_tiles.mean())
    if changed > NEW_SCENE_FRACTION:
        return WarmStart(np.asarray(popout, dtype=np.float32), False, changed)
    if not changed_tiles.any():
        return WarmStart(np.asarray(previous, dtype=np.float32), True, 0.0)
    ny, nx = measured.shape
    mask = np.kron(changed_tiles, np.ones((tile, tile), dtype=bool))[:ny, :nx]
    volume = np.where(mask[None], popout, previous).astype(np.float32)
    return WarmStart(volume, True, changed)
