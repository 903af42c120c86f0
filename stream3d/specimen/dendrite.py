"""A growing 3D nano-dendrite (calcium-like) in a liquid layer: the paper's test specimen.

The dendrite is a tree of tubes (capsules along random-walk centrelines) that starts from a
spherical nucleus. Every branch grows from its tip at ``growth`` Å per frame; side branches
start on a parent branch once the parent's tip has passed the branching point, so the tree is
always connected and never shrinks. All randomness is drawn once, at construction, from
``seed``: frame t is a pure function of (params, grid, t).

Geometry is in Å with heights above the exit plane (see :mod:`stream3d.specimen.geometry`):
a point is (h, y, x). Occupancy is exact along the beam: each (y, x) column's chord through a
tube is computed analytically and spread over the slices it covers (partial slices get the
covered fraction), so column thickness and height are honest even with 20 Å slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_EMPTY_LO, _EMPTY_HI = np.inf, -np.inf


@dataclass(frozen=True)
class DendriteParams:
    """How the dendrite grows. Lengths in Å, heights above the exit plane in Å.

    branches: total number of branches (the first up to four are arms from the nucleus,
    the rest are side branches). growth: tip advance per frame, Å. depth: (low, high) height
    interval that holds all material, Å. radius: (min, max) tube radius, Å; arms are thickest,
    side branches thinner. initial_length: tip length already grown at frame 0, Å.
    """

    branches: int = 8
    growth: float = 10.0
    depth: tuple[float, float] = (100.0, 540.0)
    radius: tuple[float, float] = (20.0, 30.0)
    initial_length: float = 40.0
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming the bad parameter."""
        if self.branches < 1:
            raise ValueError(f"dendrite branches must be >= 1, got {self.branches}")
        if not (self.growth >= 0 and math.isfinite(self.growth)):
            raise ValueError(f"dendrite growth must be >= 0 Å per frame, got {self.growth}")
        if not self.initial_length >= 0:
            raise ValueError(f"dendrite initial_length must be >= 0 Å, got {self.initial_length}")
        rmin, rmax = self.radius
        if not (0 < rmin <= rmax):
            raise ValueError(f"dendrite radius must be 0 < min <= max Å, got {self.radius}")
        low, high = self.depth
        if not low < high:
            raise ValueError(f"dendrite depth range must be low < high Å, got {self.depth}")
        if high - low < 2 * rmax:
            raise ValueError(f"dendrite depth range {self.depth} Å is thinner than the thickest "
                             f"branch (2 x {rmax} Å)")


@dataclass(frozen=True)
class Branch:
    """One tube: centreline vertices (n, 3) as (h, y, x) Å, cumulative arc length (n,) Å,
    radius Å, and ``birth``: the growth clock (Å) at which its tip starts to advance."""

    points: np.ndarray
    arc: np.ndarray
    radius: float
    birth: float

    def grown(self, clock: float) -> np.ndarray:
        """Centreline vertices grown by ``clock`` (Å of growth since the nucleus), (m, 3)."""
        length = min(clock - self.birth, float(self.arc[-1]))
        if length <= 0:
            return self.points[:0]
        k = int(np.searchsorted(self.arc, length, side="right"))  # vertices fully grown
        if k >= len(self.arc):
            return self.points
        frac = (length - self.arc[k - 1]) / (self.arc[k] - self.arc[k - 1])
        tip = self.points[k - 1] + frac * (self.points[k] - self.points[k - 1])
        return np.vstack([self.points[:k], tip[None]])


class Dendrite:
    """A growing dendrite on a (nz, ny, nx) grid sampled at (dz, dy, dx) Å.

    ``occupancy(t)`` is the material fraction of every voxel at frame t (float32 in [0, 1]);
    it never decreases with t.
    """

    def __init__(self, params: DendriteParams, shape: Sequence[int],
                 sampling: Sequence[float]) -> None:
        params.check()
        if len(shape) != 3 or any(int(n) < 1 for n in shape):
            raise ValueError(f"shape must be 3 positive sizes (z, y, x), got {tuple(shape)}")
        if len(sampling) != 3 or any(not float(d) > 0 for d in sampling):
            raise ValueError(f"sampling must be 3 positive steps (dz, dy, dx) Å, got {tuple(sampling)}")
        self.params = params
        self.shape = tuple(int(n) for n in shape)
        self.sampling = tuple(float(d) for d in sampling)
        nz, ny, nx = self.shape
        dz, dy, dx = self.sampling
        low, high = params.depth
        if low < 0 or high > nz * dz:
            raise ValueError(f"dendrite depth range {params.depth} Å lies outside the cell "
                             f"(0, {nz * dz:g}) Å")
        rmax = params.radius[1]
        # Keep a pixel of solvent around the tree so it never touches the (periodic) edge.
        self._margin = 2.0 * max(dy, dx)
        if min(ny * dy, nx * dx) < 2 * (rmax + self._margin) + 4 * max(dy, dx):
            raise ValueError(f"the field ({ny * dy:g} x {nx * dx:g} Å) is too small for "
                             f"branches of radius {rmax} Å")
        # Centreline step: short enough that a frame's growth shows, long enough to stay cheap.
        self.step = max(0.5 * params.radius[0], 2.0 * max(dy, dx))
        self.nucleus, self.branches = self._grow(np.random.default_rng(params.seed))

    # ---- construction (all randomness is here) ------------------------------------------
    def _bounds(self, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest allowed centreline point (h, y, x) for a tube of ``radius``."""
        nz, ny, nx = self.shape
        _, dy, dx = self.sampling
        low, high = self.params.depth
        m = radius + self._margin
        return (np.array([low + radius, m, m]),
                np.array([high - radius, ny * dy - m, nx * dx - m]))

    def _walk(self, start: np.ndarray, direction: np.ndarray, radius: float, length: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A persistent random walk of ``length`` Å that reflects off the allowed box."""
        lo, hi = self._bounds(radius)
        points = [np.clip(start, lo, hi)]
        d = direction / np.linalg.norm(direction)
        for _ in range(max(1, int(math.ceil(length / self.step)))):
            d = d + rng.normal(0.0, 0.25, 3)  # ~14 degrees of wander per step
            d /= np.linalg.norm(d)
            p = points[-1] + self.step * d
            for axis in range(3):  # mirror at the walls: the tip turns back into the layer
                if p[axis] < lo[axis]:
                    p[axis], d[axis] = 2 * lo[axis] - p[axis], abs(d[axis])
                elif p[axis] > hi[axis]:
                    p[axis], d[axis] = 2 * hi[axis] - p[axis], -abs(d[axis])
            points.append(np.clip(p, lo, hi))
        points = np.asarray(points)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
        return points, arc

    def _grow(self, rng: np.random.Generator) -> tuple[Branch, list[Branch]]:
        p = self.params
        _, ny, nx = self.shape
        _, dy, dx = self.sampling
        rmin, rmax = p.radius
        low, high = p.depth
        lo, hi = self._bounds(rmax)
        centre = np.array([0.5 * (low + high), 0.5 * ny * dy, 0.5 * nx * dx])
        jitter = rng.uniform(-0.1, 0.1, 3) * np.array([0.0, ny * dy, nx * dx])
        seed_point = np.clip(centre + jitter, lo, hi)
        nucleus = Branch(seed_point[None], np.zeros(1), rmax, 0.0)
        span = 0.5 * (ny * dy + nx * dx)
        arms = min(p.branches, 4)
        branches: list[Branch] = []
        phase = rng.uniform(0, 2 * np.pi)
        for i in range(arms):
            azimuth = phase + 2 * np.pi * i / arms + rng.normal(0, 0.25)
            # rad: arms alternately climb and sink, so the tree spreads through the layer
            elevation = (-1.0) ** i * rng.uniform(0.5, 1.0)
            direction = np.array([math.sin(elevation), math.cos(elevation) * math.sin(azimuth),
                                  math.cos(elevation) * math.cos(azimuth)])
            radius = rng.uniform(max(rmin, 0.85 * rmax), rmax)
            pts, arc = self._walk(seed_point, direction, radius, rng.uniform(0.5, 0.8) * span, rng)
            branches.append(Branch(pts, arc, radius, 0.0))
        for _ in range(p.branches - arms):
            weights = np.array([b.arc[-1] for b in branches])
            parent = branches[int(rng.choice(len(branches), p=weights / weights.sum()))]
            k = int(rng.integers(1, len(parent.points) - 1)) if len(parent.points) > 2 else 1
            k = min(k, len(parent.points) - 1)
            along = parent.points[k] - parent.points[k - 1]
            along /= max(np.linalg.norm(along), 1e-12)
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.3)  # rad off the parent
            c, s = math.cos(turn), math.sin(turn)
            direction = np.array([along[0] + rng.normal(0, 0.5),
                                  c * along[1] - s * along[2], s * along[1] + c * along[2]])
            radius = max(rmin, parent.radius * rng.uniform(0.7, 0.9))
            length = rng.uniform(0.3, 0.6) * parent.arc[-1]
            pts, arc = self._walk(parent.points[k], direction, radius, length, rng)
            branches.append(Branch(pts, arc, radius, parent.birth + float(parent.arc[k])))
        return nucleus, branches

    # ---- frames ---------------------------------------------------------------------------
    def clock(self, t: float) -> float:
        """Growth clock (Å) at frame ``t``: the arc length a branch born at 0 has grown."""
        if t < 0:
            raise ValueError(f"frame index must be >= 0, got {t}")
        return self.params.initial_length + self.params.growth * t

    def length(self, t: float) -> float:
        """Total centreline length (Å) of all branches at frame ``t``."""
        clock = self.clock(t)
        return float(sum(min(max(clock - b.birth, 0.0), b.arc[-1]) for b in self.branches))

    def capsules(self, t: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Every tube segment at frame ``t`` as (start (h, y, x) Å, end, radius Å)."""
        out = [(self.nucleus.points[0], self.nucleus.points[0], self.nucleus.radius)]
        clock = self.clock(t)
        for b in self.branches:
            pts = b.grown(clock)
            out.extend((pts[i], pts[i + 1], b.radius) for i in range(len(pts) - 1))
        return out

    def occupancy(self, t: float) -> np.ndarray:
        """Material fraction (z, y, x) float32 in [0, 1] at frame ``t`` (exact along z)."""
        occ = np.zeros(self.shape, dtype=np.float32)
        for a, b, r in self.capsules(t):
            _paint_capsule(occ, self.sampling, a, b, r)
        return occ


def _column_interval(a: np.ndarray, b: np.ndarray, r: float, y: np.ndarray,
                     x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights [lo, hi] (Å) where vertical lines at (y, x) cross the capsule a-b of radius r.

    A capsule is convex, so each line meets it in one interval: the union of the lines' chords
    through the two end spheres and through the finite cylinder between them. Empty: lo > hi.
    """
    lo = np.full(np.broadcast(y, x).shape, _EMPTY_LO)
    hi = np.full_like(lo, _EMPTY_HI)

    def merge(l: np.ndarray, h: np.ndarray, ok: np.ndarray) -> None:
        np.minimum(lo, np.where(ok, l, _EMPTY_LO), out=lo)
        np.maximum(hi, np.where(ok, h, _EMPTY_HI), out=hi)

    for c in (a, b):  # end spheres
        rho2 = (y - c[1]) ** 2 + (x - c[2]) ** 2
        half = np.sqrt(np.maximum(r * r - rho2, 0.0))
        merge(c[0] - half, c[0] + half, rho2 <= r * r)
    v = b - a
    length = float(np.linalg.norm(v))
    if length > 0:  # cylinder: distance to the axis <= r and axial position within [0, length]
        d = v / length
        w0 = (y - a[1]) * d[1] + (x - a[2]) * d[2]  # axial position at height a[0]
        rho2 = (y - a[1]) ** 2 + (x - a[2]) ** 2
        qa = max(1.0 - d[0] ** 2, 1e-12)  # in s = h - a[0]: qa s² + qb s + qc <= 0
        qb = -2.0 * d[0] * w0
        qc = rho2 - w0**2 - r * r
        disc = qb**2 - 4 * qa * qc
        root = np.sqrt(np.maximum(disc, 0.0))
        s_lo, s_hi = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
        if abs(d[0]) > 1e-12:  # axial position w0 + s d_h must lie in [0, length]
            u1, u2 = -w0 / d[0], (length - w0) / d[0]
            s_lo, s_hi = np.maximum(s_lo, np.minimum(u1, u2)), np.minimum(s_hi, np.maximum(u1, u2))
            ok = disc >= 0
        else:
            ok = (disc >= 0) & (w0 >= 0) & (w0 <= length)
        merge(a[0] + s_lo, a[0] + s_hi, ok & (s_lo <= s_hi))
    return lo, hi


def _paint_capsule(occ: np.ndarray, sampling: Sequence[float], a: np.ndarray, b: np.ndarray,
                   r: float) -> None:
    """occ = max(occ, fraction of each voxel inside the capsule), on the capsule's bounding box."""
    nz, ny, nx = occ.shape
    dz, dy, dx = sampling
    j0 = max(int(math.floor((min(a[1], b[1]) - r) / dy)), 0)
    j1 = min(int(math.ceil((max(a[1], b[1]) + r) / dy)) + 1, ny)
    i0 = max(int(math.floor((min(a[2], b[2]) - r) / dx)), 0)
    i1 = min(int(math.ceil((max(a[2], b[2]) + r) / dx)) + 1, nx)
    top, bottom = max(a[0], b[0]) + r, min(a[0], b[0]) - r
    k0 = max(int(math.floor(nz - top / dz)), 0)  # slice k spans heights [(nz-k-1) dz, (nz-k) dz]
    k1 = min(int(math.ceil(nz - bottom / dz)), nz)
    if j0 >= j1 or i0 >= i1 or k0 >= k1:
        return
    y = ((np.arange(j0, j1) + 0.5) * dy)[:, None]
    x = ((np.arange(i0, i1) + 0.5) * dx)[None, :]
    lo, hi = _column_interval(a, b, r, y, x)
    faces = (nz - np.arange(k0, k1) - 1.0)[:, None, None] * dz  # bottom face of each slice
    covered = np.clip(np.minimum(hi, faces + dz) - np.maximum(lo, faces), 0.0, dz) / dz
    box = occ[k0:k1, j0:j1, i0:i1]
    np.maximum(box, covered.astype(np.float32), out=box)
