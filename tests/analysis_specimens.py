"""Analytic specimens for object and track tests: shapes whose volumes, areas, centroids,
faces, births, merges and splits are known in closed form. Occupancy is the exact fraction of
each voxel inside, estimated by supersampling (SUB³ points per voxel)."""

from __future__ import annotations

import math

import numpy as np

SUB = 4


def _points(shape, sampling):
    """Sub-voxel sample heights (h above the exit plane), y, x in Å, broadcastable."""
    nz, ny, nx = shape
    dz, dy, dx = sampling
    o = (np.arange(SUB) + 0.5) / SUB
    h = ((nz - np.arange(nz)[:, None] - 1 + o[None, :]) * dz)  # (nz, SUB): slice 0 on top
    y = (np.arange(ny)[:, None] + o[None, :]) * dy
    x = (np.arange(nx)[:, None] + o[None, :]) * dx
    return h, y, x


def occupancy(inside, shape, sampling) -> np.ndarray:
    """Fraction of each voxel where ``inside(h, y, x)`` holds (h, y, x in Å)."""
    h, y, x = _points(shape, sampling)
    nz, ny, nx = shape
    H = h[:, None, None, :, None, None]
    Y = y[None, :, None, None, :, None]
    X = x[None, None, :, None, None, :]
    return inside(H, Y, X).mean(axis=(3, 4, 5)).astype(np.float64)


def sphere(c, r):
    return lambda h, y, x: (h - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r


def union(*fs):
    return lambda h, y, x: np.logical_or.reduce([f(h, y, x) for f in fs])


def cap_volume(r: float, height: float) -> float:
    """Volume (Å³) of a spherical cap of ``height`` on a sphere of radius r."""
    return math.pi * height**2 * (3 * r - height) / 3


class TwoSpheres:
    """Two spheres at the same height, centres ``gap`` Å apart along x, radius
    r0 + growth * t Å: separate while 2 r < gap, one merged object after."""

    shape, sampling = (20, 40, 72), (4.0, 2.0, 2.0)
    centre_h, centre_y, xs = 40.0, 40.0, (42.0, 102.0)
    r0, growth = 12.0, 4.0

    def radius(self, t: int) -> float:
        return self.r0 + self.growth * t

    def occupancy(self, t: int) -> np.ndarray:
        r = self.radius(t)
        return occupancy(union(*(sphere((self.centre_h, self.centre_y, x), r) for x in self.xs)),
                         self.shape, self.sampling)

    def merged(self, t: int) -> bool:
        return 2 * self.radius(t) > self.xs[1] - self.xs[0]

    def volume(self, t: int) -> float:
        """Å³ of one sphere, or of the merged pair (two spheres less their shared lens)."""
        r, gap = self.radius(t), self.xs[1] - self.xs[0]
        one = 4 / 3 * math.pi * r**3
        return 2 * one - 2 * cap_volume(r, r - gap / 2) if self.merged(t) else one


class SplittingDisc:
    """A disc (axis along the beam) cut across by a slot along y that opens at ``split_at``:
    width (t - split_at + 1) * opening Å, so one object, then two halves."""

    shape, sampling = (8, 48, 48), (10.0, 2.0, 2.0)
    h0, h1 = 20.0, 60.0  # bottom and top face heights, Å
    cy, cx, r = 48.0, 48.0, 36.0
    split_at, opening = 3, 6.0

    def width(self, t: int) -> float:
        return 0.0 if t < self.split_at else (t - self.split_at + 1) * self.opening

    def occupancy(self, t: int) -> np.ndarray:
        w = self.width(t)

        def inside(h, y, x):
            disc = ((y - self.cy) ** 2 + (x - self.cx) ** 2 <= self.r**2) & (h >= self.h0) & (h <= self.h1)
            return disc & (np.abs(x - self.cx) >= w / 2)

        return occupancy(inside, self.shape, self.sampling)

    def half_volume(self, t: int) -> float:
        """Å³ of one half once split (a circular segment x the thickness)."""
        a = self.width(t) / 2
        seg = self.r**2 * math.acos(a / self.r) - a * math.sqrt(self.r**2 - a**2)
        return seg * (self.h1 - self.h0)
