"""Discs that nucleate one after another and grow laterally: a specimen whose objects, birth
frames and volumes are known exactly, for checking object tracking (``simulate.specimen =
"growing_discs"``).

Disc k of :func:`~stream3d.specimen.shapes.three_disc_items` (same centres and heights) is born
at frame ``k * frames // 4`` with radius ``initial_length`` Å and its radius grows by ``growth``
Å per frame, up to ``MAX_RADIUS`` of the field so neighbours never touch. Before its birth a
disc is absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from stream3d.specimen.shapes import Disc, discs, three_disc_items

MAX_RADIUS = 0.22  # fraction of the smaller field side: centres are 0.46 of the field apart


class GrowingDiscs:
    """Three discs of ``thickness`` Å at ``heights`` Å, born at ``births`` (frames), radius
    ``r0 + growth * (t - birth)`` Å (capped)."""

    def __init__(self, shape: Sequence[int], sampling: Sequence[float], *, heights: Sequence[float],
                 thickness: float, births: Sequence[int], r0: float, growth: float) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.sampling = tuple(float(s) for s in sampling)
        self.items = three_disc_items(self.shape, self.sampling, heights=heights,
                                      thickness=thickness)
        self.births = tuple(int(b) for b in births)
        self.r0, self.growth = float(r0), float(growth)
        _, ny, nx = self.shape
        self.r_max = MAX_RADIUS * min(ny * self.sampling[1], nx * self.sampling[2])

    def radius(self, k: int, t: float) -> float:
        """Radius (Å) of disc ``k`` at frame ``t``; 0 before its birth."""
        if t < self.births[k]:
            return 0.0
        return min(self.r0 + self.growth * (t - self.births[k]), self.r_max)

    def discs_at(self, t: float) -> list[Disc]:
        """The discs present at frame ``t``."""
        return [replace(d, radius=self.radius(k, t)) for k, d in enumerate(self.items)
                if self.radius(k, t) > 0]

    def occupancy(self, t: float) -> np.ndarray:
        """Material fraction (z, y, x), float32 in [0, 1], at frame ``t``."""
        return discs(self.shape, self.sampling, self.discs_at(t)).astype(np.float32)


def births(frames: int, count: int = 3) -> list[int]:
    """Birth frames: disc k at k * frames // (count + 1), so the last is born mid-movie."""
    return [k * frames // (count + 1) for k in range(count)]


def disc_volume(radius: float, thickness: float) -> float:
    """Volume (Å³) of a disc of ``radius`` and ``thickness`` Å."""
    return math.pi * radius**2 * thickness
