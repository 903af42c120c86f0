"""One frame's refinement: each region's height by the texture's spectral likelihood, then
the thickness of every column's slabs, by automatic differentiation through the multislice
model.

Why heights need their own loss: from a pop-out start the texture-free model's pixel loss is
already at the level the true volume leaves (shot noise plus the amorphous texture it cannot
explain), and it is nearly flat in depth (the paper's Fig. 1B: a narrow valley with vanishing
gradients); measured on the accuracy suite, moving heights on that evidence made them worse as
often as better. The height is written in the texture's Thon rings, which a model that knows
the texture only statistically (its spectrum, measured by pop-out) can predict:

1. Heights: every object region (a compact object, or a 64 Å cell of a large one) gets a
   height shift, a parameter fitted by Fisher scoring on the Whittle likelihood of its
   residual's local power spectrum (:mod:`stream3d.refine.spectral`,
   :mod:`stream3d.refine.heights`; gradients by automatic differentiation). A region moves
   only where the likelihood ratio says so (z >= ``refine.height_significance``); the Fisher
   information gives each height's standard error. Every slab of a column moves with it.
2. Shape: every column holds up to two homogeneous slabs (:mod:`stream3d.refine.slabs`) at
   those heights.
3. Thickness region by region: one factor per object region (a large object is split on a
   grid), picked by the low-passed data loss from a few candidates
   (:mod:`stream3d.refine.object_scale`; a few forward passes). Per column, the texture's
   speckle drowns that evidence; summed over a region it is clear.
   Then every object's edge is grown where the data put it (:mod:`stream3d.refine.object_edges`:
   a forward pass per candidate move; never shrunk, never into another object).
4. Then a per-column thickness change (Å), shared by its slabs in proportion, is fitted by
   Adam on the L2 (or Poisson) data loss plus L1 total variation.
5. Material prior: every column (the start's and the grown ones) keeps at least half a slice
   of material (the fit thins and thickens; it neither adds nor removes columns).
6. Evidence: an object keeps its refined thickness and edge only where the data loss in its
   window dropped significantly (z >= ``refine.significance``); elsewhere the start's
   thickness and edge stay (at the heights of step 1, which have their own evidence).

Over time, a warm start carries the previous frames' heights, averaged with pop-out's by their
confidence (:mod:`stream3d.refine.warmstart`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from stream3d.config import Config, Refine
from stream3d.device import resolve_device
from stream3d.refine import spectral
from stream3d.refine.heights import RegionShifts, fit_region_shifts, moved_centres
from stream3d.refine.losses import loss_map
from stream3d.refine.measurement import checked_volume, measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.regularisers import total_variation
from stream3d.refine.result import RefineResult
from stream3d.refine.object_edges import MOVES, object_edges
from stream3d.refine.object_scale import FACTORS, object_factors
from stream3d.refine.slabs import column_slabs, slab_volume
from stream3d.refine.smoothing import gaussian_blur
from stream3d.specimen.geometry import least_column

#: callback(stage, iteration, state) after every optimiser step ("fit") and at the start
#: ("start"); ``state.volume()`` is the current volume (V), ``state.change`` the fitted
#: per-column thickness change (Å).
Callback = Callable[[str, int, object], None]

#: px, Gaussian width of the fitted thickness change: a change per pixel would fit the
#: amorphous texture (2 Å speckle) with thickness noise and punch holes in the material.
_SMOOTH_PX = 2.0

#: Forward-pass equivalents (the unit of ``RefineResult.evaluations``) of one optimiser step:
#: the forward pass, and a backward pass of about twice its cost.
_STEP_EVALUATIONS = 3

#: ... of the end: the start's and the refined volume's data loss (:func:`keep_significant`)
#: and the final volume's.
_END_EVALUATIONS = 3


class _State:
    """What a callback sees: the current volume, and the fitted per-column change (Å)."""

    def __init__(self, volume: Callable[[], torch.Tensor], change: torch.Tensor) -> None:
        self.volume = volume
        self.change = change


def refine_volume(frame: np.ndarray, init_volume: np.ndarray | torch.Tensor, config: Config, *,
                  device: str | torch.device | None = None, support: np.ndarray | None = None,
                  warm: bool = False, callback: Callback | None = None,
                  texture: tuple[float, ...] = (), height_sign: float = 1.0) -> RefineResult:
    """Refine ``init_volume`` (nz, ny, nx) V against ``frame`` (raw counts, (ny, nx)).

    ``device`` None uses ``refine.device``. ``support`` (ny, nx) bool: columns outside it end
    as solvent. ``warm`` marks a start from the previous frame (reported, and the message says
    so). ``callback(stage, iteration, state)`` runs at the start and after every optimiser step
    (e.g. to track the error against a known truth). ``texture`` is the amorphous texture's
    spectrum S(k) measured by pop-out (:attr:`stream3d.popout.PopoutResult.texture`; () =
    measure it here from the objects' own spectra). ``height_sign`` -1 flips the spectral
    loss's gradient (tests only: it must make heights worse). Raises
    :class:`stream3d.errors.UserError` for a frame or volume that cannot be used; NaN or
    infinity in the loss ("nan") keeps the best volume so far.
    """
    clock = time.perf_counter()
    settings = config.refine
    dev = resolve_device(settings.device if device is None else device)
    model = ImagingModel.from_config(config)
    measured = measured_intensity(frame, model, dev)
    volume = checked_volume(init_volume, tuple(measured.shape), config.sample.slices, dev)
    residual = _residual(model, measured, settings.loss)
    if settings.iterations == 0 or (settings.init == "popout" and not warm
                                    and not bool((volume != 0).any())):
        return _unrefined(volume, residual, settings, warm=warm, clock=clock)

    # The steps of the module docstring. 2: the start's shape as slabs, which 1 moves.
    slabs = _Slabs.of(volume, model, config.sample.slices)
    found = (_fit_heights(slabs, volume, measured, model, config, texture, height_sign)
             if settings.heights else None)
    # The start at the fitted heights: what the thickness evidence (6) is judged against.
    start = slabs.build(slabs.thickness).detach() if found is not None else volume
    # 3: one thickness factor per object region (a forward pass per candidate factor).
    slabs.thickness = slabs.thickness * object_factors(
        slabs.thickness, slabs.build, model.intensity, measured,
        pixel_size=config.sample.pixel_size, pad=settings.window)
    # 3: every object's edge grown where the data put it (a forward pass per move).
    slabs.centre, slabs.thickness = object_edges(
        slabs.centre, slabs.thickness, slabs.build_in, model.intensity, measured,
        pixel_size=config.sample.pixel_size, pad=settings.window)
    slabs.columns = torch.nonzero(slabs.thickness.sum(dim=0).flatten() > 0).flatten()
    columns = _Columns.of(slabs, support)
    fit = _fit_columns(columns, residual, settings, callback)  # 4
    with torch.no_grad():
        refined = columns.with_prior(fit.change)  # 5
    refined, kept = keep_significant(residual, start, refined, pad=settings.window,
                                     z=settings.significance)  # 6
    with torch.no_grad():
        loss = float(residual(refined).mean())
    evaluations = (int(found is not None) + len(MOVES) + len(FACTORS) + fit.evaluations
                   + _END_EVALUATIONS)
    return _report(refined, loss, fit, found, kept, warm=warm, evaluations=evaluations,
                   clock=clock)


def frame_heights(frame: np.ndarray, init_volume: np.ndarray, config: Config, *,
                  device: str | torch.device | None = None,
                  texture: tuple[float, ...] = ()) -> np.ndarray:
    """Step 1 alone, on a whole frame: ``init_volume`` (nz, ny, nx) V with every region's
    slabs moved to its spectral height (float32, on the host).

    For tiled refinement: each tile would cut an object crossing its border into regions of
    its own and fit their heights apart (a seam of the heights' statistical scatter, 10-20 Å);
    fitted once on the frame, every tile refines thickness at the same heights. Costs one
    forward pass of the whole frame without autograd (its memory is the wave's and the
    volume's, not the autograd record that tiles bound)."""
    dev = resolve_device(config.refine.device if device is None else device)
    model = ImagingModel.from_config(config)
    measured = measured_intensity(frame, model, dev)
    volume = checked_volume(init_volume, tuple(measured.shape), config.sample.slices, dev)
    if not bool((volume != 0).any()):
        return np.asarray(init_volume, dtype=np.float32)
    slabs = _Slabs.of(volume, model, config.sample.slices)
    _fit_heights(slabs, volume, measured, model, config, texture, 1.0)
    with torch.no_grad():
        return _numpy(slabs.build(slabs.thickness)).astype(np.float32)


def _unrefined(volume: torch.Tensor, residual: Callable[[torch.Tensor], torch.Tensor],
               settings: Refine, *, warm: bool, clock: float) -> RefineResult:
    """The start volume as given: with 0 iterations (pop-out only) or when pop-out found no
    material (a vacuum frame: nothing to refine)."""
    with torch.no_grad():
        loss = float(residual(volume).mean())
    empty = settings.iterations > 0
    return RefineResult(volume=_numpy(volume), loss=loss, loss_history=[loss],
                        iterations=0, seconds=time.perf_counter() - clock,
                        status="empty" if empty else "popout-only", warm=warm, evaluations=1,
                        message=("no material in the start volume (vacuum or solvent "
                                 "only): the volume is empty" if empty else
                                 "refine.iterations = 0: the volume is the start volume"))


@dataclass
class _Slabs:
    """Every column's slabs (:mod:`stream3d.refine.slabs`) on the device: ``centre`` heights
    (Å above the exit plane; NaN = absent) and ``thickness`` (Å), both (LAYERS, ny, nx), in a
    cell of ``nz`` slices of ``dz`` Å, of material of ``potential`` V. Steps 1 and 3 move the
    centres and scale the thicknesses in place."""

    centre: torch.Tensor
    thickness: torch.Tensor
    nz: int
    dz: float
    potential: float
    columns: torch.Tensor  # flat indices of the material columns (the start's, and those the
    # edge step grows; every later step's material stays in them: the column fit is masked)

    @classmethod
    def of(cls, volume: torch.Tensor, model: ImagingModel, nz: int) -> _Slabs:
        """The slabs of a real volume (nz, ny, nx) V."""
        slabs = column_slabs(volume.detach().cpu().numpy(), potential=model.potential,
                             dz=model.dz)
        centre = torch.as_tensor(slabs.centre, dtype=volume.dtype, device=volume.device)
        thickness = torch.as_tensor(slabs.thickness, dtype=volume.dtype, device=volume.device)
        columns = torch.nonzero(thickness.sum(dim=0).flatten() > 0).flatten()
        return cls(centre, thickness, nz, model.dz, model.potential, columns)

    def build(self, thickness: torch.Tensor) -> torch.Tensor:
        """The real volume (nz, ny, nx) V of slabs at these centres with ``thickness`` (Å)."""
        return self.build_in(self.centre, thickness, self.columns)

    def build_in(self, centre: torch.Tensor, thickness: torch.Tensor,
                 columns: torch.Tensor) -> torch.Tensor:
        """The real volume of slabs ``centre``, ``thickness`` in the flat ``columns`` only."""
        return slab_volume(centre, thickness, nz=self.nz, dz=self.dz, potential=self.potential,
                           columns=columns)


def _fit_heights(slabs: _Slabs, volume: torch.Tensor, measured: torch.Tensor,
                 model: ImagingModel, config: Config, texture: tuple[float, ...],
                 sign: float) -> RegionShifts:
    """Step 1: every region's height shift from the texture's spectra (one forward pass: the
    start's image); moves ``slabs``' centres by it."""
    settings = config.refine
    with torch.no_grad():
        modelled = model.intensity(volume)
    occupancy = volume / model.potential
    found = fit_region_shifts(measured, modelled, occupancy.clamp(0.0, 1.0), dz=model.dz,
                              lens=spectral.lens_from_config(config, texture),
                              counts_per_unit=model.counts_per_unit,
                              band=spectral.band(config), potential=model.potential,
                              limit=settings.height_limit,
                              significance=settings.height_significance, sign=sign)
    slabs.centre = moved_centres(slabs.centre, found.shift)
    return found


@dataclass
class _Columns:
    """What the per-column fit varies: each column's thickness ``column`` (Å, (ny, nx)) plus
    the fitted change, shared among its ``slabs`` in the fixed proportions ``share``, within
    the ``allowed`` columns (1, else 0)."""

    slabs: _Slabs
    column: torch.Tensor
    share: torch.Tensor
    allowed: torch.Tensor

    @classmethod
    def of(cls, slabs: _Slabs, support: np.ndarray | None) -> _Columns:
        """Material stays in the start's columns (and ``support``): the fit thins and thickens;
        where material is, is pop-out's (or the previous frame's) to say."""
        base = slabs.thickness
        column = base.sum(dim=0)
        share = torch.where(column > 0, base / column.clamp_min(1e-6), torch.full_like(base, 0.5))
        allowed = (column > 0).to(base.dtype)
        if support is not None:
            allowed = allowed * torch.as_tensor(np.asarray(support, dtype=bool),
                                                device=base.device).to(base.dtype)
        return cls(slabs, column, share, allowed)

    def total(self, change: torch.Tensor) -> torch.Tensor:
        """Each column's thickness (Å) after ``change`` (Å, smoothed), within the cell."""
        depth = self.slabs.nz * self.slabs.dz
        return (self.column + gaussian_blur(change, _SMOOTH_PX)).clamp(0.0, depth) * self.allowed

    def volume(self, change: torch.Tensor) -> torch.Tensor:
        """The real volume (nz, ny, nx) V after ``change``; differentiable in it."""
        return self.slabs.build(self.share * self.total(change))

    def with_prior(self, change: torch.Tensor) -> torch.Tensor:
        """Step 5, the volume after ``change`` under the material prior: a start column holds
        at least half a slice of material (least_column). The fit never removes a column: a
        thinned column is not evidence of no material. (Measured: letting it remove columns
        near the start's edge removed four true edge columns of a round dendrite branch for
        every false one, and each costs its whole height.)"""
        total = self.total(change).clamp_min(least_column(self.slabs.dz)) * (self.column > 0)
        return self.slabs.build(self.share * total)


@dataclass
class _Fit:
    """How the per-column fit ended: the best ``change`` (Å per column), the data loss of
    every iteration, the stop ``status`` and the cost in forward-pass equivalents."""

    change: torch.Tensor
    history: list[float]
    status: str
    evaluations: int


def _fit_columns(columns: _Columns, residual: Callable[[torch.Tensor], torch.Tensor],
                 settings: Refine, callback: Callback | None) -> _Fit:
    """Step 4: the per-column thickness change fitted by Adam on the data loss plus total
    variation, until the plateau rule, the iteration budget, or NaN; the best change is kept."""
    change = torch.zeros_like(columns.column, requires_grad=True)  # Å of material added per column
    optimiser = torch.optim.Adam([change], lr=settings.learning_rate)
    fit = _Fit(change, [], "max-iterations", 0)
    best = (float("inf"), change.detach().clone())

    def state() -> _State:
        return _State(lambda: columns.volume(change).detach(), change)

    if callback is not None:
        callback("start", 0, state())
    for iteration in range(1, settings.iterations + 1):
        optimiser.zero_grad()
        shape = columns.volume(change)
        if not bool(torch.isfinite(shape).all()):
            fit.status = "nan"
            break
        data = residual(shape).mean()
        objective = data + total_variation(shape, lateral=settings.tv_lateral,
                                           axial=settings.tv_axial,
                                           columns=columns.slabs.columns)
        fit.evaluations += _STEP_EVALUATIONS
        if not torch.isfinite(objective):
            fit.status = "nan"
            break
        fit.history.append(float(data.detach()))
        if float(objective.detach()) < best[0]:
            best = (float(objective.detach()), change.detach().clone())
        objective.backward()
        optimiser.step()
        if callback is not None:
            callback("fit", iteration, state())
        if _plateau(fit.history, settings.plateau_window, settings.plateau_tolerance):
            fit.status = "plateau"
            break
    with torch.no_grad():
        change.copy_(best[1])
    return fit


def _report(refined: torch.Tensor, loss: float, fit: _Fit, found: RegionShifts | None,
            kept: int, *, warm: bool, evaluations: int, clock: float) -> RefineResult:
    """The result of a refinement, and its one-line message."""
    origin = "the previous frame" if warm else "the start"
    heights = None if found is None else found.fit
    moved = "" if heights is None else (
        f"; heights: {int(heights.moved.sum())} of {len(heights.moved)} region(s) moved by "
        "the texture's spectra")
    history, status = fit.history, fit.status
    return RefineResult(
        volume=_numpy(refined), loss=loss, loss_history=history, iterations=len(history),
        seconds=time.perf_counter() - clock, status=status, warm=warm, evaluations=evaluations,
        regions=0 if heights is None else len(heights.shift),
        shifts=[] if heights is None else [float(x) for x in heights.shift],
        height_errors=[] if heights is None else [float(x) for x in heights.error],
        message=(f"{len(history)} iterations, stopped: {status}; {kept} object(s) kept "
                 f"{origin}'s thickness for want of evidence{moved} (loss {loss:.4g})"))


def _residual(model: ImagingModel, measured: torch.Tensor, kind: str
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-pixel data loss (ny, nx) of a real volume."""
    per_pixel = loss_map(kind)
    return lambda volume: per_pixel(model.intensity(volume), measured, model.counts_per_unit)


def _plateau(history: list[float], window: int, tolerance: float) -> bool:
    """True when the data loss improved by less than ``tolerance`` (relative) over ``window``."""
    if len(history) <= window:
        return False
    before, now = history[-window - 1], min(history[-window:])
    return before - now <= tolerance * abs(before)


@torch.no_grad()
def keep_significant(residual: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                     refined: torch.Tensor, *, pad: int, z: float) -> tuple[torch.Tensor, int]:
    """``refined`` with every object (connected material of either volume) put back to
    ``start`` unless its data loss, in the object's window (grown by ``pad`` px), dropped by a
    significant z-score >= ``z``; and how many were put back."""
    material = ((start != 0).any(dim=0) | (refined != 0).any(dim=0)).cpu().numpy()
    labels, count = ndimage.label(material)
    if count == 0:
        return refined, 0
    before, after = residual(start), residual(refined)
    out = refined.clone()
    kept = 0
    for label in range(1, count + 1):
        own = labels == label
        window = torch.as_tensor(ndimage.binary_dilation(own, iterations=pad), device=out.device)
        if significance(before[window], after[window]) < z:
            columns = torch.as_tensor(own, device=out.device)
            out[:, columns] = start[:, columns]
            kept += 1
    return out, kept


#: Pixels per independent sample of the residual: the image speckle of the amorphous texture
#: (a 2 Å correlation length band-limited by the lens) spans a few pixels.
SPECKLE_PIXELS = 4.0


def significance(before: torch.Tensor, after: torch.Tensor) -> float:
    """z-score of the mean drop of a per-pixel loss, counting speckle-sized samples."""
    drop = (before - after).double()
    n = drop.numel() / SPECKLE_PIXELS
    spread = float(drop.std()) if drop.numel() > 1 else 0.0
    mean = float(drop.mean())
    if spread == 0.0:
        return float("inf") if mean > 0 else 0.0
    return mean / (spread / np.sqrt(max(n, 1.0)))


def _numpy(volume: torch.Tensor) -> np.ndarray:
    """A real volume on the host, float32."""
    return volume.detach().cpu().numpy().astype(np.float32)
