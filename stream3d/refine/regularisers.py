"""L1 total variation of a volume, with separate lateral and axial weights."""

from __future__ import annotations

import torch


def total_variation(volume: torch.Tensor, *, lateral: float, axial: float) -> torch.Tensor:
    """Weighted anisotropic L1 TV of a (nz, ny, nx) volume in V.

    lateral x mean(|dV/dy| + |dV/dx|) + axial x mean(|dV/dz|), differences between neighbouring
    voxels in V. The weights convert volts into data-loss units, so the regulariser and the loss
    add; a weight of 0 skips its term (and its cost).
    """
    total = volume.new_zeros(())
    if lateral:
        total = total + lateral * ((volume[:, 1:, :] - volume[:, :-1, :]).abs().mean()
                                   + (volume[:, :, 1:] - volume[:, :, :-1]).abs().mean())
    if axial and volume.shape[0] > 1:
        total = total + axial * (volume[1:] - volume[:-1]).abs().mean()
    return total
