"""Material surfaces as PLY meshes (binary little-endian), one file per frame, for ParaView,
Blender and napari. Vertices are (x, y, z) in nm with z the height above the exit plane, so
the usual right-handed viewers show the specimen upright; faces are triangles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream3d.analysis.maps import MATERIAL, smooth_lateral
from stream3d.analysis.metrics import NM
from stream3d.analysis.surface import isosurface_mesh


def material_surface(occ: np.ndarray, sampling: Sequence[float], sigma_px: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (n, 3) as (x, y, height) nm, faces (m, 3)) of an occupancy's 0.5 surface
    after a lateral blur of ``sigma_px`` pixels."""
    verts, faces = isosurface_mesh(smooth_lateral(occ, sigma_px), MATERIAL, sampling)
    depth = occ.shape[0] * float(sampling[0])
    xyz = np.stack([verts[:, 2], verts[:, 1], depth - verts[:, 0]], axis=1) / NM
    # Depth -> height flips one axis, which flips the triangles' winding: swap two corners back.
    return xyz, faces[:, [0, 2, 1]]


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray, *,
              comment: str = "") -> Path:
    """Write a binary PLY: float32 x, y, z vertices and uint8-counted int32 triangle lists."""
    path = Path(path)
    v = np.ascontiguousarray(vertices, dtype="<f4")
    f = np.asarray(faces, dtype="<i4")
    header = ["ply", "format binary_little_endian 1.0"]
    if comment:
        header.append(f"comment {comment}")
    header += [f"element vertex {len(v)}", "property float x", "property float y",
               "property float z", f"element face {len(f)}",
               "property list uchar int vertex_indices", "end_header"]
    rows = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rows["n"], rows["i"] = 3, f
    with path.open("wb") as out:
        out.write(("\n".join(header) + "\n").encode("ascii"))
        out.write(v.tobytes())
        out.write(rows.tobytes())
    return path


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a PLY written by :func:`write_ply` (for tests and round trips)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    v = np.frombuffer(data, dtype="<f4", count=3 * nv, offset=end).reshape(nv, 3)
    rows = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=nf,
                         offset=end + 12 * nv)
    if nf and not (rows["n"] == 3).all():
        raise ValueError(f"{path}: faces other than triangles")
    return v.astype(np.float64), rows["i"].astype(np.int64)
