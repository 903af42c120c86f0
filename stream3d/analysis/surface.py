"""Iso-surface of a sampled 3D field by marching tetrahedra: triangles and their area.

Each grid cell (a cube of 8 neighbouring samples) is split into 6 tetrahedra that share its
main diagonal; inside a tetrahedron the field is linear, so its iso-surface is one triangle or
one quadrilateral (two triangles) with corners on the cut edges. The result is the exact
level set of the piecewise-linear interpolant: no voxel-face staircase, and no lookup table.
The grid is padded with one layer of ``outside`` so surfaces touching the border close.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

import numpy as np

# Corner c of a cell sits at offset (c >> 2 & 1, c >> 1 & 1, c & 1) along (z, y, x).
_CORNERS = np.array([((c >> 2) & 1, (c >> 1) & 1, c & 1) for c in range(8)], dtype=np.int64)


def _tetrahedra() -> np.ndarray:
    """The 6 tetrahedra of a cell: paths 000 -> one axis -> two axes -> 111 (Kuhn split)."""
    tets = []
    for order in permutations(range(3)):
        step = [0, 0, 0]
        path = [0]
        for axis in order:
            step[axis] = 1
            path.append(step[0] * 4 + step[1] * 2 + step[2])
        tets.append(path)
    return np.array(tets, dtype=np.int64)


_TETS = _tetrahedra()


def _mixed_cells(inside: np.ndarray) -> tuple[np.ndarray, ...]:
    """Indices of cells with corners both inside and outside (only they hold surface)."""
    nz, ny, nx = inside.shape
    any_in = np.zeros((nz - 1, ny - 1, nx - 1), dtype=bool)
    all_in = np.ones_like(any_in)
    for dz, dy, dx in _CORNERS:
        corner = inside[dz:nz - 1 + dz, dy:ny - 1 + dy, dx:nx - 1 + dx]
        any_in |= corner
        all_in &= corner
    return np.nonzero(any_in & ~all_in)


def _cut(values: np.ndarray, points: np.ndarray, a: int, b: int, level: float) -> np.ndarray:
    """Where the level crosses edge a -> b of each tetrahedron (rows), by linear interpolation."""
    fa, fb = values[:, a], values[:, b]
    t = (level - fa) / (fb - fa)
    return points[:, a] + t[:, None] * (points[:, b] - points[:, a])


def _tetra_triangles(values: np.ndarray, points: np.ndarray, level: float) -> list[np.ndarray]:
    """Triangles (n, 3, 3) of the level set in tetrahedra with corner values (n, 4), points (n, 4, 3)."""
    inside = values > level
    count = inside.sum(axis=1)
    # Outside corners first, then inside ones: the case is then fixed by the count alone.
    order = np.argsort(inside, axis=1, kind="stable")
    values = np.take_along_axis(values, order, axis=1)
    points = np.take_along_axis(points, order[:, :, None], axis=1)
    out = []
    one = count == 1  # corner 3 alone inside
    if one.any():
        v, p = values[one], points[one]
        out.append(np.stack([_cut(v, p, 3, k, level) for k in range(3)], axis=1))
    three = count == 3  # corner 0 alone outside
    if three.any():
        v, p = values[three], points[three]
        out.append(np.stack([_cut(v, p, 0, k, level) for k in (1, 2, 3)], axis=1))
    two = count == 2  # corners 0, 1 outside, 2, 3 inside: a quadrilateral
    if two.any():
        v, p = values[two], points[two]
        q20, q21, q31, q30 = (_cut(v, p, 2, 0, level), _cut(v, p, 2, 1, level),
                              _cut(v, p, 3, 1, level), _cut(v, p, 3, 0, level))
        out.append(np.stack([q20, q21, q31], axis=1))
        out.append(np.stack([q20, q31, q30], axis=1))
    return out


def isosurface(field: np.ndarray, level: float, spacing: Sequence[float], *,
               outside: float = 0.0) -> np.ndarray:
    """Triangles (n, 3, 3) of the surface where ``field`` (z, y, x) crosses ``level``.

    Vertices are (z, y, x) positions of voxel centres' frame: sample (i, j, k) sits at
    ((i + 0.5) dz, (j + 0.5) dy, (k + 0.5) dx) in the units of ``spacing``. Values above
    ``level`` are inside; the grid is closed by a border of ``outside`` (below ``level``).
    """
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 3:
        raise ValueError(f"field must be (z, y, x), got shape {field.shape}")
    if not outside <= level:
        raise ValueError("outside must be <= level so the border closes the surface")
    padded = np.pad(np.nan_to_num(field, nan=outside), 1, constant_values=outside)
    cells = _mixed_cells(padded > level)
    if cells[0].size == 0:
        return np.zeros((0, 3, 3))
    nz, ny, nx = padded.shape
    values = np.stack([padded[dz:nz - 1 + dz, dy:ny - 1 + dy, dx:nx - 1 + dx][cells]
                       for dz, dy, dx in _CORNERS], axis=1)
    step = np.asarray(spacing, dtype=np.float64)
    # Padding shifts indices by one: padded sample i is field sample i - 1, centre (i - 0.5) d.
    origin = np.stack(cells, axis=1).astype(np.float64) - 0.5
    points = (origin[:, None, :] + _CORNERS[None]) * step
    triangles = []
    for tet in _TETS:
        triangles += _tetra_triangles(values[:, tet], points[:, tet], level)
    return np.concatenate(triangles, axis=0)


def mesh_area(triangles: np.ndarray) -> float:
    """Total area of triangles (n, 3, 3), in the square of their coordinate unit."""
    if len(triangles) == 0:
        return 0.0
    edges1 = triangles[:, 1] - triangles[:, 0]
    edges2 = triangles[:, 2] - triangles[:, 0]
    return float(0.5 * np.linalg.norm(np.cross(edges1, edges2), axis=1).sum())
