"""Two ways to describe the volume being refined, both kept close to the material prior.

``SlabColumns`` (config ``parameterisation = "slabs"``): each (y, x) column holds one slab of
homogeneous material (the configured potential) with a centre height and a thickness in Å,
soft-edged by partial slices. This is pop-out's own description of a specimen, so pop-out's
output converts without loss, and the fit cannot invent depth structure the prior forbids.

``BoundedVoxels`` (``"voxels"``): every voxel's V is free within 0 <= V <= k x potential; the
absorptive part stays tied to V by the absorption ratio.

Both offer the same operations: the volume they describe, the tensors an optimiser may change
(all of them, or only those that move material sideways), a projection onto the constraints,
a move of chosen columns along z (shift and scale), a projection onto the material prior
(homogeneous material per column), snapshots to keep the best state, and per-column height
and thickness maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage

from stream3d.refine.zgeometry import column_centre, shift_scale_z, slab_occupancy


@dataclass(frozen=True)
class ColumnMove:
    """A move of columns along z, as (ny, nx) maps or numbers.

    A column's centre height h goes to centre + shift + (h - centre) x stretch (Å), and its
    thickness is multiplied by ``thickness``: a region is shifted, its relief stretched about
    its centre, and its material thinned or thickened, independently.
    """

    shift: torch.Tensor | float = 0.0  # Å
    stretch: torch.Tensor | float = 1.0
    thickness: torch.Tensor | float = 1.0
    centre: torch.Tensor | float = 0.0  # Å

    def height(self, height: torch.Tensor) -> torch.Tensor:
        return self.centre + self.shift + (height - self.centre) * self.stretch


@dataclass
class _RegionMoves:
    """Per-region depth shift (Å) and relief stretch, index 0 = columns in no region (fixed)."""

    labels: torch.Tensor  # (ny, nx) long
    centre: torch.Tensor  # (count + 1,) Å
    shift: torch.Tensor  # (count + 1,) Å, requires grad
    stretch: torch.Tensor  # (count + 1,), requires grad

    @classmethod
    def of(cls, labels: np.ndarray, height: torch.Tensor, thickness: torch.Tensor) -> _RegionMoves:
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=height.device)
        count = int(lab.max()) if lab.numel() else 0
        mass = torch.zeros(count + 1, dtype=height.dtype, device=height.device)
        moment = torch.zeros_like(mass)
        mass.index_add_(0, lab.ravel(), thickness.ravel())
        moment.index_add_(0, lab.ravel(), (thickness * height).ravel())
        centre = torch.where(mass > 0, moment / mass.clamp_min(1e-12), torch.zeros_like(mass))
        shift = torch.zeros_like(mass).requires_grad_(True)
        stretch = torch.ones_like(mass).requires_grad_(True)
        return cls(lab, centre, shift, stretch)

    def apply(self, height: torch.Tensor) -> torch.Tensor:
        centre = self.centre[self.labels]
        return centre + self.shift[self.labels] + (height - centre) * self.stretch[self.labels]

    @torch.no_grad()
    def project(self) -> None:
        self.shift[0] = 0.0
        self.stretch[0] = 1.0
        self.stretch.clamp_(min=0.0)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.shift.detach().cpu().numpy()[1:].copy(),
                self.stretch.detach().cpu().numpy()[1:].copy())


class Parameterisation(Protocol):
    rate_key: str
    fits_support: bool
    potential: float
    nz: int
    dz: float

    def volume(self) -> torch.Tensor: ...
    def parameters(self) -> list[torch.Tensor]: ...
    def lateral_parameters(self) -> list[torch.Tensor]: ...
    def attach_regions(self, labels: np.ndarray) -> None: ...
    def commit_regions(self) -> tuple[np.ndarray, np.ndarray]: ...
    def fit_groups(self, rate: float, shift_rate: float | None = None) -> list[dict]: ...
    def region_shift_penalty(self) -> torch.Tensor: ...
    def project(self) -> None: ...
    def moved(self, move: ColumnMove) -> torch.Tensor: ...
    def move(self, move: ColumnMove) -> None: ...
    def to_material_prior(self, thickness: torch.Tensor | None = None) -> None: ...
    def columns(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def snapshot(self) -> list[torch.Tensor]: ...
    def restore(self, state: list[torch.Tensor]) -> None: ...


def volume_columns(volume: torch.Tensor, potential: float,
                   dz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column (centre height, thickness) in Å of a volume read as material of ``potential``.

    Thickness = projected V / potential (so a column's phase is kept); the height is the centre
    of mass of the non-negative part, NaN where a column is empty.
    """
    positive = volume.clamp_min(0.0)
    thickness = positive.sum(dim=0) * dz / potential
    return column_centre(positive, dz), thickness


def fill_empty_heights(height: torch.Tensor, default: float) -> torch.Tensor:
    """Heights (Å) with NaN columns set to the height of the nearest non-empty column, or to
    ``default`` when every column is empty: where material may grow, it grows at its
    neighbours' depth."""
    empty = torch.isnan(height)
    if not bool(empty.any()):
        return height
    if bool(empty.all()):
        return torch.full_like(height, default)
    _, (iy, ix) = ndimage.distance_transform_edt(empty.cpu().numpy(), return_indices=True)
    filled = height.cpu().numpy()[iy, ix]
    return torch.as_tensor(filled, dtype=height.dtype, device=height.device)


class SlabColumns:
    """One slab of homogeneous material per column: centre height and thickness maps (Å)."""

    rate_key = "learning_rate"  # the config key of its step size (Å per step)
    fits_support = True  # thickness alone can be fitted at the start's depths

    def __init__(self, height: torch.Tensor, thickness: torch.Tensor, *, potential: float,
                 nz: int, dz: float, support: torch.Tensor | None = None) -> None:
        self.potential, self.nz, self.dz = float(potential), int(nz), float(dz)
        self.support = support
        self.height = height.detach().clone().requires_grad_(True)
        self.thickness = thickness.detach().clone().requires_grad_(True)
        self._regions: _RegionMoves | None = None
        self.project()

    @classmethod
    def from_volume(cls, volume: torch.Tensor, *, potential: float, dz: float,
                    support: torch.Tensor | None = None, max_potential: float = 1.0) -> SlabColumns:
        height, thickness = volume_columns(volume, potential, dz)
        nz = volume.shape[0]
        height = fill_empty_heights(height, 0.5 * nz * dz)
        return cls(height, thickness, potential=potential, nz=nz, dz=dz, support=support)

    def _heights(self) -> torch.Tensor:
        """Column centre heights (Å), with the regions' shift and stretch applied."""
        if self._regions is None:
            return self.height
        moved = self._regions.apply(self.height)
        half = 0.5 * self.thickness
        return torch.maximum(torch.minimum(moved, self.nz * self.dz - half), half)

    def volume(self) -> torch.Tensor:
        return self.potential * slab_occupancy(self._heights(), self.thickness, self.nz, self.dz)

    def parameters(self) -> list[torch.Tensor]:
        return [self.height, self.thickness]

    def lateral_parameters(self) -> list[torch.Tensor]:
        # Thickness decides where material is; heights barely move under gradients anyway.
        return [self.thickness]

    def attach_regions(self, labels: np.ndarray) -> None:
        """Give every region (labels (ny, nx), 0 = none) a differentiable depth shift (Å) and a
        relief stretch about its mass-centre height; see :meth:`fit_groups`."""
        height, thickness = self.columns()
        self._regions = _RegionMoves.of(labels, height, thickness)

    def commit_regions(self) -> tuple[np.ndarray, np.ndarray]:
        """Bake the regions' moves into the heights; returns their shifts (Å) and stretches."""
        if self._regions is None:
            return np.zeros(0), np.zeros(0)
        with torch.no_grad():
            self.height.copy_(self._heights())
        shifts, stretches = self._regions.values()
        self._regions = None
        self.project()
        return shifts, stretches

    def region_shift_penalty(self) -> torch.Tensor:
        """Sum of squared region shifts (Å²); 0 without regions."""
        if self._regions is None:
            return self.thickness.new_zeros(())
        return self._regions.shift[1:].square().sum()

    def fit_groups(self, rate: float, shift_rate: float | None = None) -> list[dict]:
        """Optimiser parameter groups: thickness (``rate`` Å per step) and, when regions are
        attached, their shifts (``shift_rate`` Å per step, default ``rate``). Region stretches
        are not fitted: their gradient is weak and biased towards flatter relief (a model that
        cannot explain the texture prefers less contrast); the explicit search sets them, with
        a significance test."""
        groups = [{"params": [self.thickness], "lr": rate}]
        if self._regions is not None:
            groups.append({"params": [self._regions.shift],
                           "lr": rate if shift_rate is None else shift_rate})
        return groups

    @torch.no_grad()
    def project(self) -> None:
        depth = self.nz * self.dz
        self.thickness.clamp_(0.0, depth)
        if self.support is not None:
            self.thickness.mul_(self.support)
        # Keep the whole slab inside the cell.
        half = 0.5 * self.thickness
        self.height.copy_(torch.maximum(torch.minimum(self.height, depth - half), half))
        if self._regions is not None:
            self._regions.project()

    def _moved_columns(self, move: ColumnMove) -> tuple[torch.Tensor, torch.Tensor]:
        # Kept inside the cell like :meth:`project`, so a candidate never loses material.
        depth = self.nz * self.dz
        thickness = (self.thickness * move.thickness).clamp(0.0, depth)
        half = 0.5 * thickness
        height = torch.maximum(torch.minimum(move.height(self.height), depth - half), half)
        return height, thickness

    def moved(self, move: ColumnMove) -> torch.Tensor:
        """The volume after ``move``; the state is unchanged."""
        height, thickness = self._moved_columns(move)
        return self.potential * slab_occupancy(height, thickness, self.nz, self.dz)

    @torch.no_grad()
    def move(self, move: ColumnMove) -> None:
        height, thickness = self._moved_columns(move)
        self.height.copy_(height)
        self.thickness.copy_(thickness)
        self.project()

    @torch.no_grad()
    def to_material_prior(self, thickness: torch.Tensor | None = None) -> None:
        """Already homogeneous; optionally replace the thickness map (Å)."""
        if thickness is not None:
            self.thickness.copy_(thickness)
        self.project()

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._heights().detach(), self.thickness.detach()

    def snapshot(self) -> list[torch.Tensor]:
        state = [self.height.detach().clone(), self.thickness.detach().clone()]
        if self._regions is not None:
            state += [self._regions.shift.detach().clone(), self._regions.stretch.detach().clone()]
        return state

    @torch.no_grad()
    def restore(self, state: list[torch.Tensor]) -> None:
        self.height.copy_(state[0])
        self.thickness.copy_(state[1])
        if self._regions is not None and len(state) == 4:
            self._regions.shift.copy_(state[2])
            self._regions.stretch.copy_(state[3])


class BoundedVoxels:
    """Free voxels V (volts) bounded by 0 <= V <= max_potential x potential."""

    rate_key = "voxel_learning_rate"  # the config key of its step size (V per step)
    # Free voxels fitted before the depth search would smear material along z (they fit the
    # texture in 3D) and hide the depth the search looks for: no support stage.
    fits_support = False

    def __init__(self, volume: torch.Tensor, *, potential: float, dz: float,
                 support: torch.Tensor | None = None, max_potential: float = 1.0) -> None:
        self.potential, self.nz, self.dz = float(potential), int(volume.shape[0]), float(dz)
        self.upper = float(max_potential) * self.potential
        self.support = support
        self.voxels = volume.detach().clone().requires_grad_(True)
        self.project()

    @classmethod
    def from_volume(cls, volume: torch.Tensor, *, potential: float, dz: float,
                    support: torch.Tensor | None = None,
                    max_potential: float = 1.0) -> BoundedVoxels:
        return cls(volume, potential=potential, dz=dz, support=support, max_potential=max_potential)

    def volume(self) -> torch.Tensor:
        return self.voxels

    def parameters(self) -> list[torch.Tensor]:
        return [self.voxels]

    def lateral_parameters(self) -> list[torch.Tensor]:
        return [self.voxels]

    def attach_regions(self, labels: np.ndarray) -> None:
        """Voxels move along z only through the explicit depth search."""

    def commit_regions(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(0), np.zeros(0)

    def fit_groups(self, rate: float, shift_rate: float | None = None) -> list[dict]:
        return [{"params": [self.voxels], "lr": rate}]

    def region_shift_penalty(self) -> torch.Tensor:
        return self.voxels.new_zeros(())



    @torch.no_grad()
    def project(self) -> None:
        self.voxels.clamp_(0.0, self.upper)
        if self.support is not None:
            self.voxels.mul_(self.support)

    def moved(self, move: ColumnMove) -> torch.Tensor:
        """The volume after ``move``: each column's profile is scaled about its own centre of
        mass by ``move.thickness`` and carried to its new centre height."""
        voxels = self.voxels.detach()
        height, _ = self.columns()
        height = fill_empty_heights(height, 0.5 * self.nz * self.dz)
        return shift_scale_z(voxels, shift=move.height(height) - height, scale=move.thickness,
                             centre=height, dz=self.dz)

    @torch.no_grad()
    def move(self, move: ColumnMove) -> None:
        self.voxels.copy_(self.moved(move))
        self.project()

    @torch.no_grad()
    def to_material_prior(self, thickness: torch.Tensor | None = None) -> None:
        """Each column becomes homogeneous material (the configured potential) with the
        column's centre of mass and projected potential (or the given thickness map, Å)."""
        height, own = self.columns()
        thickness = own if thickness is None else thickness
        height = fill_empty_heights(height, 0.5 * self.nz * self.dz)
        self.voxels.copy_(self.potential * slab_occupancy(height, thickness, self.nz, self.dz))
        self.project()

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        return volume_columns(self.voxels.detach(), self.potential, self.dz)

    def snapshot(self) -> list[torch.Tensor]:
        return [self.voxels.detach().clone()]

    @torch.no_grad()
    def restore(self, state: list[torch.Tensor]) -> None:
        self.voxels.copy_(state[0])


#: The parameterisations ``refine.parameterisation`` can name.
PARAMETERISATIONS: dict[str, type] = {"slabs": SlabColumns, "voxels": BoundedVoxels}
