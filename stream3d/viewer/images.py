"""Pictures the viewer serves: 2D maps on fixed colour scales, a shaded 3D height render, PNG.

Every map is drawn on a :class:`Scale` fixed for the whole run (heights and thickness from 0 to
the cell's depth, raw counts from the first frame's spread), so frames compare by colour alone.
Columns without material (NaN) are drawn in :data:`NO_DATA` grey.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

NO_DATA = np.array([60, 60, 60], np.uint8)  # RGB of "no material here" / not reconstructed
BASE = np.array([150, 150, 150], np.uint8)  # RGB of the exit plane under the 3D render
BACKGROUND = np.array([255, 255, 255], np.uint8)


def lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colour map."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


@dataclass(frozen=True)
class Scale:
    """A fixed colour scale: values ``lo``..``hi`` in ``unit`` map onto colour map ``cmap``."""

    lo: float
    hi: float
    unit: str
    cmap: str

    def colours(self, values: np.ndarray) -> np.ndarray:
        """(..., 3) uint8 RGB of ``values``; NaN -> :data:`NO_DATA`."""
        v = np.asarray(values, dtype=np.float64)
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        k = np.clip(np.nan_to_num((v - self.lo) / span, nan=0.0), 0.0, 1.0)
        rgb = lut(self.cmap)[(k * 255).round().astype(np.int64)]
        rgb[~np.isfinite(v)] = NO_DATA
        return rgb

    def describe(self, stops: int = 11) -> dict:
        """What the page needs to draw the colour bar: range, unit and ``stops`` colours."""
        table = lut(self.cmap)[np.linspace(0, 255, stops).round().astype(int)]
        return {"min": self.lo, "max": self.hi, "unit": self.unit,
                "colors": ["#%02x%02x%02x" % tuple(int(c) for c in rgb) for rgb in table]}


def png(rgb: np.ndarray) -> bytes:
    """PNG bytes of a (y, x, 3) uint8 image (fast, light compression)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


def height_render(top: np.ndarray, bottom: np.ndarray, scale: Scale, *, dz_px: float,
                  turn: int = 0, zoom: int = 3) -> np.ndarray:
    """A shaded oblique 3D picture of the material: (H, W, 3) uint8.

    ``top`` / ``bottom`` (y, x) are the heights of each column's highest and lowest material
    face above the exit plane, in ``scale.unit`` (NaN: no material). The grid is seen from the
    front (+y) at 45° elevation, drawn back to front: the exit plane in grey, then each
    column from its bottom face up to its top face, coloured by height on ``scale`` and shaded
    by a light from the upper left. ``dz_px``: screen px per unit of height (per zoomed px);
    ``turn``: quarter turns of the grid about the beam axis.
    """
    top = np.rot90(np.asarray(top, np.float64), turn)
    bottom = np.rot90(np.asarray(bottom, np.float64), turn)
    ny, nx = top.shape
    top, bottom = (np.repeat(np.repeat(a, zoom, 0), zoom, 1) for a in (top, bottom))
    gy, gx = np.gradient(np.nan_to_num(top, nan=0.0))
    # Lambert shading of the top surface, light from the upper left and the viewer.
    normal = np.stack([-gx * dz_px, -gy * dz_px, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([-0.5, -0.5, 1.0]) / np.sqrt(1.5)
    shade = 0.45 + 0.55 * np.clip(np.tensordot(light, normal, 1), 0.0, 1.0)
    colour = scale.colours(top).astype(np.float64)
    lit = (colour * shade[..., None]).astype(np.uint8)
    side = (colour * 0.55).astype(np.uint8)  # the front faces of columns, in shadow
    rows, cols = ny * zoom, nx * zoom
    depth_px = int(np.ceil((scale.hi - scale.lo) * dz_px)) + 2
    half = rows // 2  # the grid foreshortened to half its depth
    img = np.empty((half + depth_px + 2, cols, 3), np.uint8)
    img[:] = BACKGROUND
    img[depth_px: depth_px + half] = BASE  # the exit plane
    yy = np.arange(img.shape[0])[:, None]
    for r in range(rows):  # back row first: rows in front paint over it
        t = top[r]
        has = np.isfinite(t)
        if not has.any():
            continue
        base = depth_px + r // 2
        y_top = np.round(base - (t - scale.lo) * dz_px)
        y_bot = np.round(base - (np.nan_to_num(bottom[r], nan=scale.lo) - scale.lo) * dz_px)
        y_bot = np.maximum(y_bot, y_top + 1)
        front = has & (yy > y_top) & (yy <= y_bot)
        cap = has & (yy == y_top)
        img[front] = np.broadcast_to(side[r], (*front.shape, 3))[front]
        img[cap] = np.broadcast_to(lit[r], (*cap.shape, 3))[cap]
    return img
