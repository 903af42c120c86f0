"""One frame's refinement: the thickness of every column's slabs, by automatic differentiation
through the multislice model, with the heights held where pop-out (or the previous frames)
put them.

Why heights are held: from a pop-out start the texture-free model's loss is already at the
level the true volume leaves (shot noise plus the amorphous texture it cannot explain), and
its loss over a region's depth is nearly flat (the paper's Fig. 1B: a narrow valley with
vanishing gradients). Measured on the accuracy suite, letting the optimiser or an explicit
search move heights on that evidence made them worse as often as better, merged overlapping
layers into one slab and shrank thin branches; letting the fit remove columns near the start's
edge removed more true edge columns than false ones. What is fitted is how much material each
column holds (the phase contrast, and the Fresnel fringes at the edges):

1. Shape: every column holds up to two homogeneous slabs (:mod:`stream3d.refine.slabs`) at the
   start's heights.
2. Thickness region by region: one factor per object region (a large object is split on a
   grid), picked by the low-passed data loss from a few candidates
   (:mod:`stream3d.refine.object_scale`; a few forward passes). Per column, the texture's
   speckle drowns that evidence; summed over a region it is clear.
3. Then a per-column thickness change (Å), shared by its slabs in proportion, is fitted by
   Adam on the L2 (or Poisson) data loss plus L1 total variation.
4. Material prior: every start column keeps at least half a slice of material (the fit thins
   and thickens; it neither adds nor removes columns).
5. Evidence: an object keeps its refined shape only where the data loss in its window dropped
   significantly (z >= ``refine.significance``); elsewhere the start stays.

Heights improve over time instead: a warm start carries the previous frames' heights,
averaged with pop-out's by their confidence (:mod:`stream3d.refine.warmstart`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.refine.losses import loss_map
from stream3d.refine.measurement import checked_volume, measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.regularisers import total_variation
from stream3d.refine.result import RefineResult
from stream3d.refine.object_scale import FACTORS, object_factors
from stream3d.refine.slabs import column_slabs, slab_volume
from stream3d.refine.smoothing import gaussian_blur
from stream3d.specimen.geometry import least_column

#: callback(stage, iteration, state) after every optimiser step ("fit") and at the start
#: ("start"); ``state.volume()`` is the current volume (V), ``state.change`` the fitted
#: per-column thickness change (Å).
Callback = Callable[[str, int, object], None]


class _State:
    """What a callback sees: the current volume, and the fitted per-column change (Å)."""

    def __init__(self, volume: Callable[[], torch.Tensor], change: torch.Tensor) -> None:
        self.volume = volume
        self.change = change


def refine_volume(frame: np.ndarray, init_volume: np.ndarray | torch.Tensor, config: Config, *,
                  device: str | torch.device | None = None, support: np.ndarray | None = None,
                  warm: bool = False, callback: Callback | None = None) -> RefineResult:
    """Refine ``init_volume`` (nz, ny, nx) V against ``frame`` (raw counts, (ny, nx)).

    ``device`` None uses ``refine.device``. ``support`` (ny, nx) bool: columns outside it end
    as solvent. ``warm`` marks a start from the previous frame (reported, and the message says
    so). ``callback(stage, iteration, state)`` runs at the start and after every optimiser step
    (e.g. to track the error against a known truth). Raises
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
                                    and not bool((volume.real != 0).any())):
        # The start volume as given: with 0 iterations (pop-out only) or when pop-out found no
        # material (a vacuum frame: nothing to refine).
        with torch.no_grad():
            loss = float(residual(volume).mean())
        empty = settings.iterations > 0
        return RefineResult(volume=_numpy(volume), loss=loss, loss_history=[loss],
                            iterations=0, seconds=time.perf_counter() - clock,
                            status="empty" if empty else "popout-only", warm=warm, evaluations=1,
                            message=("no material in the start volume (vacuum or solvent "
                                     "only): the volume is empty" if empty else
                                     "refine.iterations = 0: the volume is the start volume"))

    dz, nz = model.dz, config.sample.slices
    slabs = column_slabs(volume.detach().cpu().numpy(), potential=model.potential, dz=dz)
    real = volume.real.dtype if volume.is_complex() else volume.dtype
    centre = torch.as_tensor(slabs.centre, dtype=real, device=dev)
    base = torch.as_tensor(slabs.thickness, dtype=real, device=dev)

    def build(thickness: torch.Tensor) -> torch.Tensor:
        return slab_volume(centre, thickness, nz=nz, dz=dz, potential=model.potential)

    # First each object region's thickness as a whole (a few forward passes), then per column.
    base = base * object_factors(base, build, model.intensity, measured,
                                 pixel_size=config.sample.pixel_size, pad=settings.window)
    evaluations = len(FACTORS)
    column = base.sum(dim=0)
    share = torch.where(column > 0, base / column.clamp_min(1e-6), torch.full_like(base, 0.5))
    # Material stays in the start's columns (and ``support``): the fit thins and thickens;
    # where material is, is pop-out's (or the previous frame's) to say.
    allowed = (column > 0).to(real)
    if support is not None:
        allowed = allowed * torch.as_tensor(np.asarray(support, dtype=bool), device=dev).to(real)
    change = torch.zeros_like(column, requires_grad=True)  # Å of material added per column

    def shaped() -> torch.Tensor:
        total = (column + gaussian_blur(change, _SMOOTH_PX)).clamp(0.0, nz * dz) * allowed
        return build(share * total)

    optimiser = torch.optim.Adam([change], lr=settings.learning_rate)
    history: list[float] = []
    best = (float("inf"), change.detach().clone())
    status = "max-iterations"
    if callback is not None:
        callback("start", 0, _State(lambda: shaped().detach(), change))
    for iteration in range(1, settings.iterations + 1):
        optimiser.zero_grad()
        shape = shaped()
        if not bool(torch.isfinite(shape).all()):
            status = "nan"
            break
        data = residual(shape).mean()
        objective = data + total_variation(shape, lateral=settings.tv_lateral,
                                           axial=settings.tv_axial)
        evaluations += 3  # forward, and a backward pass of about twice its cost
        if not torch.isfinite(objective):
            status = "nan"
            break
        history.append(float(data.detach()))
        if float(objective.detach()) < best[0]:
            best = (float(objective.detach()), change.detach().clone())
        objective.backward()
        optimiser.step()
        if callback is not None:
            callback("fit", iteration, _State(lambda: shaped().detach(), change))
        if _plateau(history, settings.plateau_window, settings.plateau_tolerance):
            status = "plateau"
            break
    with torch.no_grad():
        change.copy_(best[1])
        # Material prior: a start column holds at least half a slice of material
        # (least_column). The fit never removes a column: a thinned column is not evidence of
        # no material. (Measured: letting it remove columns near the start's edge removed four
        # true edge columns of a round dendrite branch for every false one, and each costs its
        # whole height.)
        total = (column + gaussian_blur(change, _SMOOTH_PX)).clamp(0.0, nz * dz) * allowed
        total = total.clamp_min(least_column(dz)) * (column > 0)
        refined = build(share * total)
    refined, kept = keep_significant(residual, volume.real if volume.is_complex() else volume,
                                     refined, pad=settings.window,
                                     z=settings.significance)
    with torch.no_grad():
        loss = float(residual(refined).mean())
    evaluations += 3
    start = "the previous frame" if warm else "the start"
    return RefineResult(
        volume=_numpy(refined), loss=loss, loss_history=history, iterations=len(history),
        seconds=time.perf_counter() - clock, status=status, warm=warm, evaluations=evaluations,
        message=(f"{len(history)} iterations, stopped: {status}; {kept} object(s) kept from "
                 f"{start} for want of evidence (loss {loss:.4g})"))


#: px, Gaussian width of the fitted thickness change: a change per pixel would fit the
#: amorphous texture (2 Å speckle) with thickness noise and punch holes in the material.
_SMOOTH_PX = 2.0


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
    volume = volume.real if volume.is_complex() else volume
    return volume.detach().cpu().numpy().astype(np.float32)
