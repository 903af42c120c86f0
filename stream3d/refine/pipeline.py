"""One frame's refinement: support, depth search, joint fit, material prior, evidence.

1. Support fit (AD): each column's thickness is fitted by projected Adam with the heights held,
   which sharpens the lateral shape from the frame's absorption and phase contrast. Then each
   region becomes homogeneous material (the configured potential) on that support.
2. Depth search: shift, relief stretch and thickness of each region along z, judged by the loss
   in the region's window. Gradients vanish along depth, but the minimum of the loss is at the
   truth; the search jumps the narrow valley when the start is far off.
3. Joint fit (AD): the thickness of every column together with a depth shift and a relief
   stretch per region (regions tiled into ``region_size`` blocks for local depth). Free
   thickness absorbs the amorphous texture, so the region depths see the Thon-ring
   information that a texture-free model misses; a region's gradient sums over all its columns
   and does not vanish. Ends when the support and heights settle.
4. Material prior again: homogeneous material on the fitted support.
5. Evidence: an object keeps its refined shape only where the data loss in its window dropped
   significantly; elsewhere the start (pop-out, or the previous frame) stays. Near the start
   the texture-free model's loss is already at the noise level, and an insignificant drop is
   no reason to move material (measured: it moved heights the wrong way as often as not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from stream3d.config import Config, Refine
from stream3d.device import resolve_device
from stream3d.refine.depth_search import (
    significance,
    SPECKLE_PIXELS, SearchOutcome, SearchSettings, search_depths,
)
from stream3d.refine.losses import loss_map
from stream3d.refine.measurement import checked_volume, measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.noise import expected_loss
from stream3d.refine.optimise import LoopReport, StopRules, optimise
from stream3d.refine.parameterisations import PARAMETERISATIONS, Parameterisation
from stream3d.refine.regions import Regions, find_regions, tile
from stream3d.refine.regularisers import total_variation
from stream3d.refine.result import RefineResult
from stream3d.refine.support import FitWatch, grow, material_thickness

#: callback(stage, iteration, param) with stage "start", "support", "search" or "fit".
Callback = Callable[[str, int, Parameterisation], None]


@dataclass
class _Problem:
    """The measured frame, the model and the loss: what every stage evaluates."""

    model: ImagingModel
    measured: torch.Tensor
    kind: str
    tv_lateral: float
    tv_axial: float

    def residual(self, volume: torch.Tensor) -> torch.Tensor:
        """Per-pixel data loss (ny, nx) of a volume."""
        return loss_map(self.kind)(self.model.intensity(volume), self.measured,
                                   self.model.counts_per_unit)

    def objective(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.residual(volume).mean()
        return data, data + total_variation(volume, lateral=self.tv_lateral, axial=self.tv_axial)


@dataclass
class _Start:
    """A state a stage starts from: column heights / thicknesses (Å) and its regions."""

    height: np.ndarray
    thickness: np.ndarray
    regions: Regions

    @classmethod
    def of(cls, param: Parameterisation, settings: Refine) -> _Start:
        height, thickness = (c.cpu().numpy().copy() for c in param.columns())
        support = thickness > 0.25 * param.dz
        regions = find_regions(support, height, jump=settings.region_jump,
                               min_area=settings.region_min_area)
        return cls(height, thickness, regions)


@dataclass
class _Run:
    """The stages of one refinement and their bookkeeping (iterations, history, statuses)."""

    problem: _Problem
    param: Parameterisation
    settings: Refine
    callback: Callback | None
    iterations: int = 0
    evaluations: int = 0
    history: list[float] = field(default_factory=list)
    troubles: list[str] = field(default_factory=list)

    warm: bool = False

    @property
    def rate(self) -> float:
        return getattr(self.settings, self.param.rate_key)

    @property
    def shift_rate(self) -> float:
        """Step size of region shifts: the configured one, times ``warm_rate`` on a warm start
        (the depths are within a few Å; Adam's first steps are a full step for every
        parameter, so a cold-start step would only throw converged depths around)."""
        return self.rate * self.settings.warm_rate if self.warm else self.rate

    @property
    def budget(self) -> int:
        return max(self.settings.iterations - self.iterations, 0)

    def _stage_callback(self, stage: str):
        if self.callback is None:
            return None
        offset = self.iterations
        return lambda iteration, p: self.callback(stage, offset + iteration, p)

    def _record(self, report: LoopReport) -> LoopReport:
        self.iterations += report.iterations
        self.evaluations += report.evaluations
        self.history += report.loss_history
        if report.status in ("nan", "diverged"):
            self.troubles.append(report.status)
        return report

    def _rules(self, budget: int, noise_level: float = 0.0) -> StopRules:
        s = self.settings
        return StopRules(max_iterations=budget, noise_level=noise_level,
                         noise_factor=s.noise_factor, plateau_window=s.plateau_window,
                         plateau_tolerance=s.plateau_tolerance, divergence=s.divergence)

    def fit(self, stage: str, max_iterations: int, watch: str,
            shift_prior: float = 0.0) -> LoopReport:
        """Adam on the parameterisation's fit groups until the watched quantity settles.

        ``shift_prior`` (loss units per Å²) weighs a Gaussian prior that keeps region shifts
        near zero, i.e. near the start's depths (see :func:`temporal_weight`).
        """
        s = self.settings
        watch = FitWatch(s.plateau_window, s.settle_step, watch=watch, sigma=s.thickness_smoothing)
        groups = self.param.fit_groups(self.rate, self.shift_rate)
        objective = self.problem.objective
        if shift_prior > 0:
            def objective(volume, _base=self.problem.objective):
                data, total = _base(volume)
                return data, total + shift_prior * self.param.region_shift_penalty()
        return self._record(optimise(self.param, groups, objective,
                                     decay=s.lr_decay,
                                     rules=self._rules(min(max_iterations, self.budget)),
                                     stop=watch, callback=self._stage_callback(stage)))

    def apply_material_prior(self, start: _Start) -> Regions:
        s = self.settings
        _, fitted = self.param.columns()
        thickness, regions = material_thickness(
            start.regions, start.thickness, start.height, fitted.cpu().numpy().copy(),
            fraction=s.support_fraction, jump=s.region_jump, min_area=s.region_min_area,
            smoothing=s.thickness_smoothing)
        probe = self.param.volume()
        self.param.to_material_prior(torch.as_tensor(thickness, dtype=probe.dtype,
                                                     device=probe.device))
        return regions

    def search(self, regions: Regions, half_range: float) -> SearchOutcome:
        s = self.settings
        settings = SearchSettings(shift_range=half_range, step=min(s.search_step, half_range)
                                  if half_range > 0 else s.search_step,
                                  stretch_range=s.search_stretch,
                                  thickness_range=s.search_thickness, count=s.search_scales,
                                  pad=s.window, significance=s.search_significance)
        outcome = search_depths(self.param, regions, self.problem.residual, settings)
        self.evaluations += outcome.evaluations
        if self.callback is not None:
            self.callback("search", self.iterations, self.param)
        return outcome


def refine_volume(frame: np.ndarray, init_volume: np.ndarray | torch.Tensor, config: Config, *,
                  device: str | torch.device | None = None, support: np.ndarray | None = None,
                  warm: bool = False, search_shift: float | None = None,
                  callback: Callback | None = None) -> RefineResult:
    """Refine ``init_volume`` (nz, ny, nx) V against ``frame`` (raw counts, (ny, nx)).

    ``device`` None uses ``refine.device``. ``support`` (ny, nx) bool limits where material may
    be (grown by ``refine.support_margin`` pixels). ``warm`` marks a start whose depths come
    from the previous frame (see :mod:`stream3d.refine.warmstart`): the support fit is left to
    the joint fit, the depth search spans +- ``refine.warm_search_shift`` (unless
    ``search_shift`` Å is given), region shifts take ``refine.warm_rate`` smaller steps and
    a prior of width ``refine.temporal_depth`` keeps them near the previous depths.
    ``callback(stage, iteration, param)`` runs after every optimiser step and after
    the depth search (e.g. to track the error against a known truth). Raises
    :class:`stream3d.errors.UserError` for a frame or volume that cannot be used; trouble during
    optimisation ("nan", "diverged") is reported in the status, with the best volume so far.
    """
    clock = time.perf_counter()
    settings = config.refine
    dev = resolve_device(settings.device if device is None else device)
    model = ImagingModel.from_config(config)
    measured = measured_intensity(frame, model, dev)
    volume = checked_volume(init_volume, tuple(measured.shape), config.sample.slices, dev)
    problem = _Problem(model, measured, settings.loss, settings.tv_lateral, settings.tv_axial)
    allowed = None
    if support is not None:
        mask = np.asarray(support, dtype=bool)
        if mask.shape != tuple(measured.shape):
            raise ValueError(f"support shape {mask.shape} does not match the frame "
                             f"{tuple(measured.shape)}")
        allowed = torch.as_tensor(grow(mask, settings.support_margin), dtype=volume.dtype,
                                  device=dev)
    param = PARAMETERISATIONS[settings.parameterisation].from_volume(
        volume, potential=model.potential, dz=model.dz, support=allowed,
        max_potential=settings.max_potential)

    if settings.iterations == 0 or (settings.init == "popout" and not warm
                                    and not bool((volume.real != 0).any())):
        # The start volume as given, not its parameterised copy: with 0 iterations (pop-out
        # only) or when pop-out found no material (a vacuum frame: nothing to refine).
        with torch.no_grad():
            loss = float(problem.residual(volume).mean())
        empty = settings.iterations > 0
        return RefineResult(volume=_numpy(volume), loss=loss, loss_history=[loss],
                            iterations=0, seconds=time.perf_counter() - clock,
                            status="empty" if empty else "popout-only", warm=warm, evaluations=1,
                            message=("no material in the start volume (vacuum or solvent "
                                     "only): the volume is empty" if empty else
                                     "refine.iterations = 0: the volume is the start volume"))

    start = _Start.of(param, settings)
    run = _Run(problem, param, settings, callback, warm=warm)
    if callback is not None:
        callback("start", 0, param)
    if search_shift is None:
        search_shift = settings.warm_search_shift if warm else settings.search_shift

    # 1. Support at the start's depths, homogeneous material on it. A warm start leaves the
    # support to the joint fit: its depths need no support fitted at wrong depths first.
    if not warm and param.fits_support:
        run.fit("support", settings.support_iterations, watch="thickness")
    regions = run.apply_material_prior(start)
    # 2. Explicit depth search of every region.
    outcome = run.search(regions, search_shift)
    # 3. Joint fit: thickness with a depth shift per region.
    start = _Start.of(param, settings)
    param.attach_regions(tile(start.regions.labels, settings.region_size))
    shift_prior = 0.0
    if warm and settings.temporal_depth > 0:  # the previous frame's depths are a measurement too
        level = expected_loss(model, param.volume().detach(), loss_map(settings.loss),
                              texture=config.sample.texture,
                              texture_length=config.sample.texture_length, samples=1,
                              seed=settings.seed)
        run.evaluations += 2
        shift_prior = temporal_weight(level, measured.numel(), settings.temporal_depth)
    fit = run.fit("fit", settings.iterations, watch="both", shift_prior=shift_prior)
    param.commit_regions()
    # 4. Material prior on the fitted support.
    regions = run.apply_material_prior(start)
    # The loss the true volume would leave (texture and shot noise): for the message and the
    # next frame's scene-change test.
    noise = expected_loss(model, param.volume().detach(), loss_map(settings.loss),
                          texture=config.sample.texture,
                          texture_length=config.sample.texture_length,
                          samples=settings.noise_samples, seed=settings.seed)
    run.evaluations += 2 * settings.noise_samples
    status = run.troubles[0] if run.troubles else fit.status
    # 5. Keep the start where the data do not say clearly that the refinement is better.
    refined, kept = keep_significant(problem.residual, volume, param.volume().detach(),
                                     pad=settings.window, z=settings.search_significance)
    with torch.no_grad():
        loss = float(problem.residual(refined).mean())
    return RefineResult(
        volume=_numpy(refined), loss=loss, loss_history=run.history,
        iterations=run.iterations, seconds=time.perf_counter() - clock, status=status,
        warm=warm, noise_level=noise, evaluations=run.evaluations, regions=regions.count,
        shifts=outcome.shifts, scales=outcome.stretches, thickness_scales=outcome.thickness,
        message=(f"{run.iterations} iterations, {regions.count} regions ({kept} kept from the "
                 f"start), stopped: {status} (loss {loss:.4g}, expected at the truth "
                 f"{noise:.4g})"))


@torch.no_grad()
def keep_significant(residual: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                     refined: torch.Tensor, *, pad: int, z: float) -> tuple[torch.Tensor, int]:
    """``refined`` with every object (connected material of either volume) put back to
    ``start`` unless its data loss, in the object's window (grown by ``pad`` px), dropped by a
    significant z-score >= ``z``; and how many were put back.

    Near the start the texture-free model's loss is at the noise level and nearly flat, so a
    refinement that wanders without lowering it significantly is not evidence; the start
    (pop-out, or the previous frame) stays.
    """
    material = ((start.real != 0).any(dim=0) | (refined.real != 0).any(dim=0)).cpu().numpy()
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


def temporal_weight(noise_level: float, pixels: int, depth: float) -> float:
    """Weight (loss units per Å²) of a Gaussian prior of width ``depth`` Å on region shifts.

    The data loss is a mean over ``pixels`` of squared residuals of variance ``noise_level``,
    correlated over speckle-sized patches, so its log-likelihood is about
    (pixels / SPECKLE_PIXELS) x loss / (2 noise_level). A prior shift ~ N(0, depth²) adds
    shift² / (2 depth²); in loss units that is noise_level x SPECKLE_PIXELS / pixels / depth²
    per Å² of every region's shift: the MAP estimate of a depth seen in two frames.
    """
    return noise_level * SPECKLE_PIXELS / max(pixels, 1) / depth**2


def _numpy(volume: torch.Tensor) -> np.ndarray:
    return volume.detach().cpu().numpy().astype(np.float32)
