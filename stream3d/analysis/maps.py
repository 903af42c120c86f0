"""Per-column maps of an occupancy volume: top / bottom of the material, thickness; line profiles.

Heights are above the exit plane (Å) with slice i's centre at (nz - i - 0.5) dz, as in
:mod:`stream3d.specimen.geometry`. Material is occupancy > 0.5; a face is placed where the
occupancy, interpolated linearly between slice centres (zero outside the cell), crosses 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from stream3d.specimen.geometry import slice_centres

MATERIAL = 0.5  # occupancy threshold: material is above half the material potential


def _face(occ_in: np.ndarray, occ_out: np.ndarray, dz: float) -> np.ndarray:
    """Distance (Å) from an inside slice centre to the 0.5 crossing towards its outside neighbour."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return dz * (occ_in - MATERIAL) / (occ_in - occ_out)


def top_bottom(occupancy: np.ndarray, dz: float) -> tuple[np.ndarray, np.ndarray]:
    """Height (Å) of the highest material face and of the lowest one in every (y, x) column.

    NaN in columns without material. ``occupancy`` is (z, y, x) in [0, 1], slice 0 on top.
    """
    occ = np.nan_to_num(np.asarray(occupancy, dtype=np.float64), nan=0.0)
    nz = occ.shape[0]
    inside = occ > MATERIAL
    has = inside.any(axis=0)
    first = np.argmax(inside, axis=0)  # topmost inside slice
    last = nz - 1 - np.argmax(inside[::-1], axis=0)  # lowest inside slice
    padded = np.pad(occ, ((1, 1), (0, 0), (0, 0)))  # padded[i + 1] is slice i
    take = lambda index: np.take_along_axis(padded, index[None], axis=0)[0]  # noqa: E731
    centres = slice_centres(nz, dz)
    top = centres[first] + _face(take(first + 1), take(first), dz)
    bottom = centres[last] - _face(take(last + 1), take(last + 2), dz)
    return np.where(has, top, np.nan), np.where(has, bottom, np.nan)


def thickness(occupancy: np.ndarray, dz: float, region: np.ndarray | None = None) -> np.ndarray:
    """Material thickness (Å) of every column: occupancy x dz summed (over ``region`` if given)."""
    occ = np.nan_to_num(np.asarray(occupancy, dtype=np.float64), nan=0.0)
    if region is not None:
        occ = occ * region
    return occ.sum(axis=0) * dz


def line_samples(line: Sequence[float], spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``spacing`` along ``line`` = (y0, x0, y1, x1): (distance, y, x), all in its unit."""
    y0, x0, y1, x1 = (float(v) for v in line)
    length = float(np.hypot(y1 - y0, x1 - x0))
    if not length > 0:
        raise ValueError("the line's two ends must differ")
    n = max(2, int(round(length / spacing)) + 1)
    s = np.linspace(0.0, length, n)
    return s, y0 + (y1 - y0) * s / length, x0 + (x1 - x0) * s / length


def profile(image: np.ndarray, y: np.ndarray, x: np.ndarray, pixel: Sequence[float]) -> np.ndarray:
    """Values of a (y, x) map at positions (y, x) in the map's length unit, nearest pixel.

    Pixel (j, k) covers [j dy, (j + 1) dy) x [k dx, (k + 1) dx); positions outside give NaN.
    Nearest pixel keeps NaN (no material) honest instead of smearing it into neighbours.
    """
    dy, dx = pixel
    j = np.floor(np.asarray(y) / dy).astype(np.int64)
    k = np.floor(np.asarray(x) / dx).astype(np.int64)
    ok = (j >= 0) & (j < image.shape[0]) & (k >= 0) & (k < image.shape[1])
    out = np.full(j.shape, np.nan)
    out[ok] = image[j[ok], k[ok]]
    return out


def smooth_lateral(occupancy: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur along y and x only (``sigma_px`` pixels), never along the beam."""
    occ = np.asarray(occupancy, dtype=np.float64)
    if sigma_px <= 0:
        return occ
    return ndimage.gaussian_filter(occ, (0.0, sigma_px, sigma_px), mode="constant")
