"""Explicit search of each region's depth shift and z-scale, before any gradient step.

The data loss over a region's depth has a clear minimum at the truth but sits in a narrow
valley with vanishing gradients (the paper's Fig. 1B), so gradient descent cannot find it; a
search can. Each region is judged by the loss in its own window; regions whose windows do not
overlap move together in one forward evaluation, so the cost does not grow with the number of
regions. The search is four line searches: coarse shift, coarse scale, fine shift, fine scale.
Shift moves a region's mass centre and scale (about that centre) does not, so the two are
nearly independent and alternating 1D searches find the 2D optimum at a fraction of a grid's
cost. The current state is always a candidate: the search never raises a region's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from stream3d.refine.parameterisations import Parameterisation
from stream3d.refine.regions import Regions, colour_groups, windows

ResidualMap = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SearchOutcome:
    """Shift (Å) and scale found for each region, and the forward evaluations spent."""

    shifts: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    evaluations: int = 0


def offsets(half_range: float, step: float) -> np.ndarray:
    """0, +-step, +-2 step, ... up to +-half_range (just 0 when either is 0)."""
    if step <= 0 or half_range <= 0:
        return np.zeros(1)
    n = int(np.floor(half_range / step + 1e-9))
    return step * np.arange(-n, n + 1, dtype=np.float64)


def search_lines(*, half_range: float, step: float, scale_range: float, scale_count: int,
                 fine_steps: int = 4) -> list[tuple[str, np.ndarray]]:
    """The four line searches: ("shift", offsets in Å) or ("scale", relative offsets)."""
    fine = step / fine_steps if fine_steps > 1 else 0.0
    scale_step = 2 * scale_range / (scale_count - 1) if scale_count > 1 else 0.0
    return [("shift", offsets(half_range, step)), ("scale", offsets(scale_range, scale_step)),
            ("shift", offsets(min(step, half_range), fine)),
            ("scale", offsets(scale_step / 2, scale_step / 4))]


@torch.no_grad()
def search_depths(param: Parameterisation, regions: Regions, residual: ResidualMap, *,
                  half_range: float, step: float, scale_range: float, scale_count: int,
                  pad: int, fine_steps: int = 4) -> SearchOutcome:
    """Move every region of ``param`` to the shift and scale that minimise its window loss.

    ``residual(volume)`` is the per-pixel data loss (ny, nx) of a volume. Shifts span
    +- ``half_range`` Å in ``step`` Å, then +- ``step`` in ``step / fine_steps``; scales
    (about the region's mass-centre height) span 1 +- ``scale_range`` in ``scale_count`` values,
    then half a scale step around the best. Windows are regions grown by ``pad`` pixels.
    The moves are applied to ``param``.
    """
    outcome = SearchOutcome()
    count = regions.count
    lines = search_lines(half_range=half_range, step=step, scale_range=scale_range,
                         scale_count=scale_count, fine_steps=fine_steps)
    if count == 0 or all(o.size <= 1 for _, o in lines):
        outcome.shifts, outcome.scales = [0.0] * count, [1.0] * count
        return outcome
    height, thickness = (c.cpu().numpy() for c in param.columns())
    probe = param.volume()
    centres = np.nan_to_num(regions.centres(height, thickness), nan=0.5 * param.nz * param.dz)
    masks_np = windows(regions, pad)
    masks = [torch.as_tensor(m, device=probe.device) for m in masks_np]
    members = [torch.as_tensor(regions.mask(r + 1), device=probe.device) for r in range(count)]
    centre_map = torch.zeros(regions.labels.shape, dtype=probe.dtype, device=probe.device)
    for r in range(count):
        centre_map[members[r]] = float(centres[r])
    shifts, scales = np.zeros(count), np.ones(count)

    def maps(group, shift_of, scale_of):
        shift_map = torch.zeros_like(centre_map)
        scale_map = torch.ones_like(centre_map)
        for r in group:
            shift_map[members[r]] = shift_of[r]
            scale_map[members[r]] = scale_of[r]
        return shift_map, scale_map

    for group in colour_groups(masks_np, 0):
        best = {r: (float("inf"), 0.0, 1.0) for r in group}
        for axis, line in lines:
            known = np.isfinite(best[group[0]][0])
            base = {r: best[r][1:] for r in group}
            for offset in line:
                if known and offset == 0:
                    continue  # the current best: its loss is already known
                shift_of = {r: base[r][0] + (offset if axis == "shift" else 0.0) for r in group}
                scale_of = {r: base[r][1] * (1.0 + offset if axis == "scale" else 1.0)
                            for r in group}
                res = residual(param.moved(*maps(group, shift_of, scale_of), centre_map))
                outcome.evaluations += 1
                for r in group:
                    loss = float(res[masks[r]].mean())
                    if loss < best[r][0]:
                        best[r] = (loss, shift_of[r], scale_of[r])
        for r in group:
            shifts[r], scales[r] = best[r][1], best[r][2]
        param.move(*maps(group, shifts, scales), centre_map)
    outcome.shifts, outcome.scales = shifts.tolist(), scales.tolist()
    return outcome
