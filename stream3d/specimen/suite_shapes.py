"""Randomised specimens for the accuracy suite (benchmarks/accuracy.py).

Every builder is a pure function of (shape, sampling, rng): the seed moves every object, tilts
and sizes, so a method cannot be tuned on one fixed layout. Sizes and heights are given as
fractions of the field and of the cell depth, so the same builders make a 256 x 256 x 32 suite
and a tiny test grid. Occupancy maps are (z, y, x) float32 in [0, 1]; heights are above the
exit plane (Å), see :mod:`stream3d.specimen.geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stream3d.specimen.dendrite import Dendrite, DendriteParams
from stream3d.specimen.geometry import slab_profile
from stream3d.specimen.shapes import Disc, discs

Grid = tuple[Sequence[int], Sequence[float]]


def _field(shape: Sequence[int], sampling: Sequence[float]) -> tuple[float, float, float]:
    """(cell depth, field height, field width) in Å."""
    return shape[0] * sampling[0], shape[1] * sampling[1], shape[2] * sampling[2]


def _lateral(shape: Sequence[int], sampling: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) Å, each (ny, nx)."""
    return np.meshgrid((np.arange(shape[1]) + 0.5) * sampling[1],
                       (np.arange(shape[2]) + 0.5) * sampling[2], indexing="ij")


def _place(radii: Sequence[float], field: tuple[float, float], gap: float,
           rng: np.random.Generator, tries: int = 200) -> list[tuple[float, float]]:
    """Random centres (y, x) Å for discs of ``radii`` that keep ``gap`` Å from each other and
    from the field's edge (the grid is periodic)."""
    fy, fx = field
    if any(2 * (r + gap) > min(fy, fx) for r in radii):
        raise ValueError(f"discs of radii {list(radii)} Å do not fit in a {fy} x {fx} Å field")
    for _ in range(tries):
        centres: list[tuple[float, float]] = []
        for r in radii:
            lo = r + gap
            for _ in range(200):
                y, x = rng.uniform(lo, fy - lo), rng.uniform(lo, fx - lo)
                if all(math.hypot(y - cy, x - cx) >= r + rc + gap
                       for (cy, cx), rc in zip(centres, radii)):
                    centres.append((y, x))
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise ValueError(f"discs of radii {list(radii)} Å do not fit apart in a {fy} x {fx} Å field")


def disc_items(shape: Sequence[int], sampling: Sequence[float], rng: np.random.Generator, *,
               heights: Sequence[float] = (0.2, 0.5, 0.8), jitter: float = 0.04,
               thickness: tuple[float, float] = (0.07, 0.12),
               radius: tuple[float, float] = (0.11, 0.17)) -> list[Disc]:
    """Separate flat discs, one per entry of ``heights``.

    heights: centre heights as fractions of the cell depth, each moved by up to ``jitter`` (of
    the depth); thickness: (min, max) fraction of the depth; radius: (min, max) fraction of
    the field's smaller side. Discs keep 8 % of the field apart, so they never merge.
    """
    depth, fy, fx = _field(shape, sampling)
    side = min(fy, fx)
    radii = [rng.uniform(*radius) * side for _ in heights]
    centres = _place(radii, (fy, fx), 0.08 * side, rng)
    out = []
    for (y, x), r, h in zip(centres, radii, heights):
        t = rng.uniform(*thickness) * depth
        centre = np.clip((h + rng.uniform(-jitter, jitter)) * depth, t / 2, depth - t / 2)
        out.append(Disc(y, x, r, float(centre), t))
    return out


def scattered_discs(shape: Sequence[int], sampling: Sequence[float], rng: np.random.Generator,
                    **kw) -> np.ndarray:
    """Occupancy of :func:`disc_items` (discs at three heights by default)."""
    return discs(shape, sampling, disc_items(shape, sampling, rng, **kw))


def overlapping_layers(shape: Sequence[int], sampling: Sequence[float],
                       rng: np.random.Generator, *, heights: tuple[float, float] = (0.22, 0.72),
                       jitter: float = 0.03, thickness: float = 0.1, radius: float = 0.3,
                       overlap: tuple[float, float] = (0.45, 0.65)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Two discs at two heights whose footprints overlap (columns holding both layers):
    the depth-spillover case. Returns (low layer, high layer) occupancies; the specimen is
    their maximum.

    heights: fractions of the depth (~140 and ~460 Å in a 640 Å cell), moved by up to
    ``jitter``; thickness: fraction of the depth; radius: fraction of the field's smaller side;
    overlap: (min, max) of 1 - d / (2 r), d the distance between the centres (0: the discs
    touch, 1: concentric).
    """
    depth, fy, fx = _field(shape, sampling)
    side = min(fy, fx)
    r = radius * side
    t = thickness * depth
    distance = 2 * r * (1 - rng.uniform(*overlap))
    angle = rng.uniform(0, 2 * np.pi)
    cy, cx = fy / 2 + rng.uniform(-0.05, 0.05) * fy, fx / 2 + rng.uniform(-0.05, 0.05) * fx
    dy, dx = 0.5 * distance * math.sin(angle), 0.5 * distance * math.cos(angle)
    layers = []
    for sign, h in zip((-1, 1), heights):
        centre = np.clip((h + rng.uniform(-jitter, jitter)) * depth, t / 2, depth - t / 2)
        layers.append(discs(shape, sampling, [Disc(cy + sign * dy, cx + sign * dx, r,
                                                   float(centre), t)]))
    return layers[0], layers[1]


def thick_particle(shape: Sequence[int], sampling: Sequence[float], rng: np.random.Generator,
                   *, thickness: float = 300.0, radius: tuple[float, float] = (0.2, 0.27)
                   ) -> np.ndarray:
    """A compact particle ``thickness`` Å tall along the beam: a cylinder with its axis along
    z, radius a (min, max) fraction of the field's smaller side, at a random position and
    height. Its columns are all ``thickness`` thick (clipped to the cell depth)."""
    depth, fy, fx = _field(shape, sampling)
    t = min(thickness, 0.9 * depth)
    r = rng.uniform(*radius) * min(fy, fx)
    (y, x), = _place([r], (fy, fx), 0.05 * min(fy, fx), rng)
    centre = rng.uniform(t / 2 + 0.05 * depth, depth - t / 2 - 0.05 * depth)
    return discs(shape, sampling, [Disc(y, x, r, float(centre), t)])


def tilted_plate(shape: Sequence[int], sampling: Sequence[float], rng: np.random.Generator, *,
                 heights: tuple[float, float] = (0.23, 0.77), thickness: float = 0.1,
                 radius: tuple[float, float] = (0.3, 0.38)) -> np.ndarray:
    """A round plate whose centre height rises linearly across it, in a random direction, from
    ``heights[0]`` to ``heights[1]`` (fractions of the depth, ~150 to ~490 Å in 640 Å) over its
    diameter. thickness: fraction of the depth (vertical); radius: fraction of the field."""
    depth, fy, fx = _field(shape, sampling)
    side = min(fy, fx)
    r = rng.uniform(*radius) * side
    (cy, cx), = _place([r], (fy, fx), 0.03 * side, rng)
    azimuth = rng.uniform(0, 2 * np.pi)
    yy, xx = _lateral(shape, sampling)
    along = ((yy - cy) * math.sin(azimuth) + (xx - cx) * math.cos(azimuth)) / (2 * r) + 0.5
    low, high = heights[0] * depth, heights[1] * depth
    centre = low + (high - low) * np.clip(along, 0, 1)
    t = thickness * depth
    occ = slab_profile(shape[0], sampling[0], centre - t / 2, centre + t / 2)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return occ * inside[None]


def branched_dendrite(shape: Sequence[int], sampling: Sequence[float],
                      rng: np.random.Generator, *, radius: tuple[float, float] = (15.0, 30.0),
                      branches: int = 10, growth: float = 10.0,
                      initial_length: float = 120.0, depth: tuple[float, float] = (0.16, 0.84)
                      ) -> Dendrite:
    """A branched dendrite of thin tubes (radius in Å, (min, max)): ``occupancy(t)`` grows by
    ``growth`` Å per frame from ``initial_length`` Å. depth: the layer that holds it, as
    fractions of the cell depth (~100 to ~540 Å in 640 Å). On a grid too small for the tubes
    (a test grid) they shrink to fit."""
    cell, fy, fx = _field(shape, sampling)
    low, high = depth[0] * cell, depth[1] * cell
    # a small test grid: shrink the tubes to fit its layer and field (no-op at 256 x 256 x 32)
    rmax = min(radius[1], (high - low) / 2, 0.25 * min(fy, fx))
    radius = (min(radius[0], rmax / 2), rmax) if rmax < radius[1] else radius
    params = DendriteParams(branches=branches, growth=growth, depth=(low, high),
                            radius=radius, initial_length=initial_length,
                            seed=int(rng.integers(2**31)))
    return Dendrite(params, shape, sampling)


def approaching_discs(shape: Sequence[int], sampling: Sequence[float], rng: np.random.Generator,
                      *, frames: int, gap_first: float = 20.0, gap_last: float = 2.5,
                      thickness: float = 60.0) -> list[list[Disc]]:
    """Two discs that grow towards each other and never touch, static in z: per frame the
    two :class:`Disc` s. Their gap (Å, edge to edge) shrinks linearly from ``gap_first`` to
    ``gap_last``; heights are drawn from ``rng`` at least 150 Å apart within the cell, the pair's
    axis at a random angle through the field's centre.
    """
    depth, fy, fx = _field(shape, sampling)
    lo, hi = thickness / 2 + 40.0, depth - thickness / 2 - 40.0
    while True:
        heights = rng.uniform(lo, hi, size=2)
        if abs(heights[0] - heights[1]) >= 150.0:
            break
    angle = rng.uniform(0, np.pi)
    distance = 0.5 * min(fy, fx)  # centre to centre
    cy, cx = fy / 2, fx / 2
    out = []
    for t in range(frames):
        gap = gap_first + (gap_last - gap_first) * t / max(frames - 1, 1)
        radius = (distance - gap) / 2
        out.append([Disc(cy + s * 0.5 * distance * math.sin(angle),
                         cx + s * 0.5 * distance * math.cos(angle), radius, float(h), thickness)
                    for s, h in zip((-1, 1), heights)])
    return out
