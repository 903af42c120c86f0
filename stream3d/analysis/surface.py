"""Iso-surface of a sampled 3D field (scikit-image's marching cubes): mesh, triangles, area.

Chosen over the marching tetrahedra this module used to hold by measuring both on a sphere
with partial-volume occupancy (radius 14-30 Å; grids of 1, 4, 20 Å slices x 1 Å pixels): area
errors +0.3 %, +1.5 %, +12.6 % (marching cubes) against +6.3 %, +7.3 %, +17.7 %
(tetrahedra), 5x faster (tests/test_analysis_surface.py keeps the comparison's sphere).
The grid is padded with one layer of ``outside`` so surfaces touching the border close.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def isosurface_mesh(field: np.ndarray, level: float, spacing: Sequence[float], *,
                    outside: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (n, 3), faces (m, 3)) of the surface where ``field`` (z, y, x) crosses ``level``.

    Vertices are (z, y, x) in the units of ``spacing``, with sample (i, j, k) at
    ((i + 0.5) dz, (j + 0.5) dy, (k + 0.5) dx). Values above ``level`` are inside; the grid is
    closed by a border of ``outside`` (below ``level``). No crossing: empty arrays.
    """
    from skimage.measure import marching_cubes

    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 3:
        raise ValueError(f"field must be (z, y, x), got shape {field.shape}")
    if not outside < level:
        raise ValueError("outside must be below level so the border closes the surface")
    padded = np.pad(np.nan_to_num(field, nan=outside), 1, constant_values=outside)
    if not (padded > level).any():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    step = np.asarray(spacing, dtype=np.float64)
    verts, faces, _, _ = marching_cubes(padded, level, spacing=tuple(step))
    # Padding shifts indices by one: padded sample i is field sample i - 1, centre (i - 0.5) d.
    return verts - 0.5 * step, faces.astype(np.int64)


def isosurface(field: np.ndarray, level: float, spacing: Sequence[float], *,
               outside: float = 0.0) -> np.ndarray:
    """Triangles (n, 3, 3) of :func:`isosurface_mesh` (vertices (z, y, x), spacing's unit)."""
    verts, faces = isosurface_mesh(field, level, spacing, outside=outside)
    return verts[faces] if len(faces) else np.zeros((0, 3, 3))


def mesh_area(triangles: np.ndarray) -> float:
    """Total area of triangles (n, 3, 3), in the square of their coordinate unit."""
    if len(triangles) == 0:
        return 0.0
    edges1 = triangles[:, 1] - triangles[:, 0]
    edges2 = triangles[:, 2] - triangles[:, 0]
    return float(0.5 * np.linalg.norm(np.cross(edges1, edges2), axis=1).sum())
