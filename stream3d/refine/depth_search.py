"""Explicit search of each region's depth, relief and thickness, before any gradient step.

The data loss over a region's depth has a clear minimum at the truth but sits in a narrow
valley with vanishing gradients (the paper's Fig. 1B), so gradient descent cannot find it; a
search can. A region may be shifted along z, its relief stretched about its centre height
(pop-out smooths height variations), and its material thickened or thinned. Each region is
judged by the loss in its own window; regions whose windows do not overlap move together in
one forward evaluation, so the cost does not grow with the number of regions. The three
parameters barely interact (a shift moves the mass centre, a stretch about that centre does
not, thickness changes neither), so coarse then fine line searches along each find the optimum
at a fraction of a full grid's cost. The current state is always a candidate: the search never
raises a region's loss, and a move is applied only when the drop of the region's loss is
significant against the pixel-to-pixel scatter of that drop (shot noise and the texture the
model does not explain): close to the truth this texture-free model has shallow, biased minima
(soft edges carry little depth signal), and finer corrections are left to the joint gradient
fit, which sees more of the depth information. A coarse line whose best point is at the end
of its range found a slope, not a minimum (a model that cannot explain the data prefers less
contrast, e.g. thinner or flatter material); that line's move is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from stream3d.refine.parameterisations import ColumnMove, Parameterisation
from stream3d.refine.regions import Regions, colour_groups, windows

ResidualMap = Callable[[torch.Tensor], torch.Tensor]

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
AXES = ("shift", "stretch", "thickness")


@dataclass
class SearchOutcome:
    """Per region: shift (Å), relief stretch and thickness factor found; forward evaluations."""

    shifts: list[float] = field(default_factory=list)
    stretches: list[float] = field(default_factory=list)
    thickness: list[float] = field(default_factory=list)
    evaluations: int = 0


@dataclass(frozen=True)
class SearchSettings:
    """Ranges of the search. Shifts: +- ``shift_range`` Å in ``step`` Å, then +- ``step`` in
    ``step / fine_steps``. Stretch and thickness factors: 1 +- their range in ``count`` values,
    then half a step around the best. A range of 0 leaves that parameter alone."""

    shift_range: float
    step: float
    stretch_range: float
    thickness_range: float
    count: int
    pad: int  # px, window = region grown by this
    fine_steps: int = 4
    significance: float = 0.0  # z-score the best move's loss drop must reach to be applied

    def lines(self) -> list[tuple[str, np.ndarray, bool]]:
        """The line searches in order: (axis, offsets, coarse); shift offsets in Å, others
        relative."""
        coarse, fine = [], []
        for axis, span in (("shift", self.shift_range), ("stretch", self.stretch_range),
                           ("thickness", self.thickness_range)):
            if axis == "shift":
                step = self.step
                fine_range, fine_step = min(step, span), step / self.fine_steps
            else:
                step = 2 * span / (self.count - 1) if self.count > 1 else 0.0
                fine_range, fine_step = step / 2, step / 4
            coarse.append((axis, offsets(span, step), True))
            fine.append((axis, offsets(fine_range, fine_step if self.fine_steps > 1 else 0.0),
                         False))
        return [(a, o, c) for a, o, c in coarse + fine if o.size > 1]


def offsets(half_range: float, step: float) -> np.ndarray:
    """0, +-step, +-2 step, ... up to +-half_range (just 0 when either is 0)."""
    if step <= 0 or half_range <= 0:
        return np.zeros(1)
    n = int(np.floor(half_range / step + 1e-9))
    return step * np.arange(-n, n + 1, dtype=np.float64)


def _apply(value: dict[str, float], axis: str, offset: float) -> dict[str, float]:
    out = dict(value)
    out[axis] = value[axis] + offset if axis == "shift" else value[axis] * (1.0 + offset)
    return out


@torch.no_grad()
def search_depths(param: Parameterisation, regions: Regions, residual: ResidualMap,
                  settings: SearchSettings) -> SearchOutcome:
    """Move every region of ``param`` to the shift, stretch and thickness that minimise the
    loss in its window. ``residual(volume)`` is the per-pixel data loss (ny, nx). The moves are
    applied to ``param``."""
    outcome = SearchOutcome()
    count = regions.count
    identity = {"shift": 0.0, "stretch": 1.0, "thickness": 1.0}
    lines = settings.lines()
    if count == 0 or not lines:
        outcome.shifts = [0.0] * count
        outcome.stretches, outcome.thickness = [1.0] * count, [1.0] * count
        return outcome
    height, thickness = (c.cpu().numpy() for c in param.columns())
    probe = param.volume()
    centres = np.nan_to_num(regions.centres(height, thickness), nan=0.5 * param.nz * param.dz)
    masks_np = windows(regions, settings.pad)
    masks = [torch.as_tensor(m, device=probe.device) for m in masks_np]
    members = [torch.as_tensor(regions.mask(r + 1), device=probe.device) for r in range(count)]
    centre_map = torch.zeros(regions.labels.shape, dtype=probe.dtype, device=probe.device)
    for r in range(count):
        centre_map[members[r]] = float(centres[r])
    found = [dict(identity) for _ in range(count)]

    def column_move(group: list[int], values: dict[int, dict[str, float]]) -> ColumnMove:
        maps = {axis: torch.full_like(centre_map, identity[axis]) for axis in AXES}
        for r in group:
            for axis in AXES:
                maps[axis][members[r]] = values[r][axis]
        return ColumnMove(centre=centre_map, **maps)

    for group in colour_groups(masks_np, 0):
        res = residual(param.moved(column_move(group, {r: identity for r in group})))
        outcome.evaluations += 1
        start = {r: res[masks[r]] for r in group}
        best = {r: (float(start[r].mean()), dict(identity), start[r]) for r in group}
        for axis, line, coarse in lines:
            base = {r: best[r] for r in group}
            winner = {r: None for r in group}
            for offset in line:
                if offset == 0:
                    continue  # the current best: its loss is already known
                trial = {r: _apply(base[r][1], axis, offset) for r in group}
                res = residual(param.moved(column_move(group, trial)))
                outcome.evaluations += 1
                for r in group:
                    values = res[masks[r]]
                    loss = float(values.mean())
                    if loss < best[r][0]:
                        best[r], winner[r] = (loss, trial[r], values), offset
            if coarse:  # a best point at the end of the range is a slope: keep the base
                for r in group:
                    if winner[r] is not None and abs(winner[r]) >= np.abs(line).max() - 1e-9:
                        best[r] = base[r]
        for r in group:
            if significance(start[r], best[r][2]) >= settings.significance:
                found[r] = best[r][1]
        param.move(column_move(group, {r: found[r] for r in group}))
    outcome.shifts = [f["shift"] for f in found]
    outcome.stretches = [f["stretch"] for f in found]
    outcome.thickness = [f["thickness"] for f in found]
    return outcome
