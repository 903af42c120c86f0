"""3D rendering of the material surface at a few time points (matplotlib mplot3d, Agg canvas).

The surface is the same marching-cubes level set the area metric measures, computed on a
laterally block-averaged copy so that a picture holds at most a few ten thousand triangles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from stream3d.analysis.maps import MATERIAL, smooth_lateral
from stream3d.analysis.metrics import ANTIALIAS_PX
from stream3d.analysis.surface import isosurface

MAX_LATERAL_PX = 72  # lateral samples per axis in a rendered surface
MAX_HEIGHT_ASPECT = 1.0  # drawn height at most this times the field width
_LIGHT = np.array([0.5, -0.4, 0.77])  # (height, y, x) direction of the light, roughly overhead


def coarse(occupancy: np.ndarray, sampling: Sequence[float], max_px: int = MAX_LATERAL_PX
           ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Occupancy block-averaged along y and x to at most ``max_px`` samples; its new sampling."""
    nz, ny, nx = occupancy.shape
    f = max(1, int(np.ceil(max(ny, nx) / max_px)))
    if f == 1:
        return np.asarray(occupancy, dtype=np.float64), tuple(float(s) for s in sampling)
    py, px = -ny % f, -nx % f
    occ = np.pad(np.asarray(occupancy, dtype=np.float64), ((0, 0), (0, py), (0, px)))
    occ = occ.reshape(nz, occ.shape[1] // f, f, occ.shape[2] // f, f).mean(axis=(2, 4))
    dz, dy, dx = (float(s) for s in sampling)
    return occ, (dz, dy * f, dx * f)


def material_mesh(occupancy: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Triangles (n, 3, 3) of the material surface, vertices (height, y, x) in nm."""
    occ, step = coarse(occupancy, sampling)
    # Anti-aliasing blur of the metric, scaled to the coarse pixels.
    tris = isosurface(smooth_lateral(occ, ANTIALIAS_PX), MATERIAL, step)
    depth = occupancy.shape[0] * float(sampling[0])
    out = tris / 10.0
    out[..., 0] = (depth - tris[..., 0]) / 10.0  # depth below entrance -> height above exit
    return out


def _shade(tris: np.ndarray, norm: Normalize) -> np.ndarray:
    """RGBA per triangle: colour by mean height, dimmed by the angle to the light."""
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = normal / np.where(length > 0, length, 1.0)
    light = _LIGHT / np.linalg.norm(_LIGHT)
    lit = 0.45 + 0.55 * np.abs(normal @ light)  # two-sided: triangles are not oriented
    rgba = colormaps["viridis"](norm(tris[:, :, 0].mean(axis=1)))
    rgba[:, :3] *= lit[:, None]
    return rgba


def plot_render(meshes: Sequence[np.ndarray], titles: Sequence[str],
                cell_nm: tuple[float, float, float], path: Path) -> Path:
    """One 3D panel per mesh (vertices (height, y, x) nm), in a box of ``cell_nm`` =
    (depth, field y, field x) nm, coloured by height above the exit plane."""
    depth, fy, fx = cell_nm
    n = len(meshes)
    cols = 2 if n == 4 else n
    rows = -(-n // cols)
    fig = Figure(figsize=(4.6 * cols + 1.2, 4.4 * rows + 0.4), layout="constrained")
    zlo, zhi = _height_range(meshes, depth)
    norm = Normalize(zlo, zhi)
    # Deep cells over small fields would be needles at true aspect: cap the drawn height.
    shown = min(zhi - zlo, MAX_HEIGHT_ASPECT * max(fx, fy))
    squeeze = shown / (zhi - zlo)
    axes = [fig.add_subplot(rows, cols, k + 1, projection="3d") for k in range(n)]
    for ax, tris, title in zip(axes, meshes, titles, strict=True):
        if len(tris):
            # mplot3d wants (x, y, z): x, y lateral, z = height.
            xyz = tris[:, :, [2, 1, 0]]
            ax.add_collection3d(Poly3DCollection(xyz, facecolors=_shade(tris, norm),
                                                 edgecolors="none"))
        else:
            ax.text(fx / 2, fy / 2, depth / 2, "no material", ha="center")
        ax.set(xlim=(0, fx), ylim=(fy, 0), zlim=(zlo, zhi))
        ax.set_box_aspect((fx, fy, shown))
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel("x (nm)", labelpad=2)
        ax.set_ylabel("y (nm)", labelpad=2)
        ax.set_zlabel("height (nm)", labelpad=2)
        ax.tick_params(labelsize=7)
        ax.view_init(elev=22, azim=-58)
        ax.set_title(title, fontsize=10)
    fig.colorbar(ScalarMappable(norm=norm, cmap=colormaps["viridis"]), ax=axes, shrink=0.6,
                 label="height above exit plane (nm)")
    fig.suptitle("Material surface in 3D" + (
        f" (height axis drawn {squeeze:.2g} x its true scale)" if squeeze < 0.99 else " (true scale)"))
    return _save(fig, path)


def _height_range(meshes: Sequence[np.ndarray], depth: float) -> tuple[float, float]:
    """Heights (nm) spanned by the meshes with a margin, within the cell [0, depth]."""
    heights = [m[:, :, 0] for m in meshes if len(m)]
    if not heights:
        return 0.0, depth
    lo = min(float(h.min()) for h in heights)
    hi = max(float(h.max()) for h in heights)
    pad = 0.08 * depth
    return max(0.0, lo - pad), min(depth, hi + pad)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
