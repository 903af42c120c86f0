"""Errors of a refinement against a known truth, step by step (:class:`Trajectory`).

The scores themselves (depth error, IoU, ...) live in :mod:`stream3d.scoring`, below both
refinement and analysis; they are re-exported here for older imports.
"""

from __future__ import annotations

import numpy as np

from stream3d.scoring.volume import Errors, depth_error, errors, iou, occupancy_of

__all__ = ["Errors", "Trajectory", "depth_error", "errors", "iou", "occupancy_of"]


class Trajectory:
    """Errors against a truth after every optimiser step of a refinement: pass it as the
    ``callback`` of :func:`stream3d.refine.refine_volume` (or a Refiner's), then ask when a
    target was first reached. Iteration 0 is the start volume."""

    def __init__(self, occupancy: np.ndarray, *, potential: float, dz: float) -> None:
        self.occupancy, self.potential, self.dz = occupancy, potential, dz
        self.points: list[tuple[int, Errors]] = []

    def __call__(self, stage: str, iteration: int, param) -> None:
        volume = param.volume().detach().cpu().numpy()
        self.points.append((iteration, errors(volume, self.occupancy, potential=self.potential,
                                              dz=self.dz)))

    def reached(self, target: Errors, *, depth_slack: float = 1.0,
                iou_slack: float = 0.01) -> int | None:
        """First iteration whose depth error <= target's + ``depth_slack`` Å and whose IoU >=
        target's - ``iou_slack``; None if never."""
        for iteration, e in self.points:
            if e.depth <= target.depth + depth_slack and e.iou >= target.iou - iou_slack:
                return iteration
        return None
