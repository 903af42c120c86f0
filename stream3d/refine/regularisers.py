"""L1 total variation of a volume, with separate lateral and axial weights."""

from __future__ import annotations

import torch


def total_variation(volume: torch.Tensor, *, lateral: float, axial: float,
                    columns: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted anisotropic L1 TV of a (nz, ny, nx) volume in V.

    lateral x mean(|dV/dy| + |dV/dx|) + axial x mean(|dV/dz|), differences between neighbouring
    voxels in V. The weights convert volts into data-loss units, so the regulariser and the loss
    add; a weight of 0 skips its term (and its cost).

    ``columns`` (long, flat indices (y nx + x)): the only columns that may be non-zero. The same
    value is then summed over the steps that touch them only (each mean keeps the whole
    volume's count): the refinement's material fills a fraction of the frame, and the whole
    volume's differences and their backward cost about a forward pass per iteration.
    """
    total = volume.new_zeros(())
    nz, ny, nx = volume.shape
    if columns is None:
        if lateral:
            total = total + lateral * ((volume[:, 1:, :] - volume[:, :-1, :]).abs().mean()
                                       + (volume[:, :, 1:] - volume[:, :, :-1]).abs().mean())
        if axial and nz > 1:
            total = total + axial * (volume[1:] - volume[:-1]).abs().mean()
        return total
    if lateral:
        steps_y, steps_x = _lateral_steps(volume, columns)
        total = total + lateral * (steps_y / (nz * (ny - 1) * nx) + steps_x / (nz * ny * (nx - 1)))
    if axial and nz > 1:
        part = volume.reshape(nz, -1)[:, columns]
        total = total + axial * (part[1:] - part[:-1]).abs().sum() / ((nz - 1) * ny * nx)
    return total


def _lateral_steps(volume: torch.Tensor, columns: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed |steps| along y and x over the neighbour pairs with a column in ``columns``."""
    nz, ny, nx = volume.shape
    mask = torch.zeros(ny * nx, dtype=torch.bool, device=volume.device)
    mask[columns] = True
    flat = volume.reshape(nz, -1)
    index = torch.arange(ny * nx, device=volume.device).reshape(ny, nx)
    sums = []
    for first, second in ((index[:-1], index[1:]), (index[:, :-1], index[:, 1:])):
        touched = mask[first] | mask[second]
        a, b = first[touched], second[touched]
        sums.append((flat[:, a] - flat[:, b]).abs().sum())
    return sums[0], sums[1]
