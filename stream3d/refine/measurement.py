"""Checked inputs: a raw frame as dose-normalised intensity, and a starting volume.

Bad input gets one clear error naming what is wrong (:class:`stream3d.errors.UserError`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stream3d.errors import UserError
from stream3d.refine.model import ImagingModel


def measured_intensity(frame: np.ndarray, model: ImagingModel,
                       device: torch.device) -> torch.Tensor:
    """Raw counts (y, x) -> intensity (vacuum = 1): counts / (dose x pixel area), float32."""
    array = np.asarray(frame)
    if array.ndim != 2 or array.size == 0:
        raise UserError(f"frame must be a 2D (y, x) array of counts, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise UserError(f"frame must hold real counts, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise UserError("frame contains NaN or infinite counts")
    if (array < 0).any():
        raise UserError("frame contains negative counts")
    if not array.any():
        raise UserError("frame has no counts (all zero): nothing to reconstruct (beam blanked, "
                        "shutter closed or a detector dropout?)")
    return torch.as_tensor(array / model.counts_per_unit, device=device)


def checked_volume(volume: np.ndarray | torch.Tensor, frame_shape: tuple[int, ...],
                   slices: int, device: torch.device) -> torch.Tensor:
    """A starting volume (nz, ny, nx) V as float32 on ``device``, matching the frame and the
    configured number of slices; the real part is taken from a complex volume."""
    if isinstance(volume, torch.Tensor):
        array = volume.detach().cpu().numpy()
    else:
        array = np.asarray(volume)
    if np.iscomplexobj(array):
        array = array.real
    if array.ndim != 3:
        raise UserError(f"volume must be (z, y, x), got shape {array.shape}")
    if array.shape[1:] != tuple(frame_shape):
        raise UserError(f"volume shape {array.shape} does not match the frame "
                        f"{tuple(frame_shape)}: its last two axes must equal the frame's (y, x)")
    if array.shape[0] != slices:
        raise UserError(f"volume has {array.shape[0]} slices but sample.slices = {slices}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise UserError("volume contains NaN or infinite values")
    return torch.as_tensor(array, device=device)


def uniform_volume(frame: np.ndarray, model: ImagingModel, slices: int) -> np.ndarray:
    """The 'uniform' start: the frame's mean projected potential spread evenly over the cell.

    The mean intensity of material of absorption ratio a and projected potential P t is about
    exp(-2 sigma a P t), which gives the mean thickness t; V = P t / (slices dz) everywhere.
    Without absorption (or a frame brighter than vacuum) the cell starts empty.
    """
    from stream3d.physics import interaction_constant

    ny, nx = np.asarray(frame).shape
    mean = float(np.mean(frame)) / model.counts_per_unit
    sigma = interaction_constant(model.energy)
    value = 0.0
    if model.absorption > 0 and 0 < mean < 1:
        projected = -math.log(mean) / (2 * sigma * model.absorption)  # V·Å
        value = projected / (slices * model.dz)
    return np.full((slices, ny, nx), value, dtype=np.float32)
