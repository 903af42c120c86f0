"""Patch-grid results -> per-pixel maps: confidence, window-weighted spreading, hole filling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stream3d.popout.ctf_fit import PatchFits
from stream3d.popout.patches import PatchGrid

#: Rings: the confidence's ring factor ramps linearly over one ring, from 0 at popout.min_rings
#: - this to 1 at min_rings + 1 - this (centred on min_rings), so the confidence does not jump
#: where material crosses min_rings. A smooth step, set by hand; no measurement chose it.
RING_RAMP = 0.5

#: A second local maximum of the fit scoring this share of the best one makes the depth
#: ambiguous (uniqueness 0); uniqueness falls linearly to it from 1 (no other maximum). Set by
#: hand on the accuracy suite's seed 0.
AMBIGUOUS = 0.5


def patch_confidence(fits: PatchFits, rings: np.ndarray, *, tolerance: float,
                     min_rings: float) -> np.ndarray:
    """Confidence in [0, 1] of each patch's depth.

    The product of three factors: precision 1 / (1 + (sigma / tolerance)^2) (0.5 at sigma =
    tolerance Å); enough Thon rings in the band (a ramp from min_rings - 0.5 to min_rings + 0.5,
    :data:`RING_RAMP`: near Scherzer focus the rings are too few to locate); and uniqueness
    (a second local maximum scoring above :data:`AMBIGUOUS` of the best one means two depths
    fit about equally).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        precision = 1.0 / (1.0 + (fits.sigma / tolerance) ** 2)
    precision = np.nan_to_num(precision, nan=0.0)
    enough_rings = np.clip(rings - min_rings + RING_RAMP, 0.0, 1.0)
    unique = np.clip((1.0 - fits.ambiguity) / (1.0 - AMBIGUOUS), 0.0, 1.0)
    return np.clip(precision * enough_rings * unique, 0.0, 1.0)


def spread(values: np.ndarray, weights: np.ndarray, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel weighted mean of patch ``values`` (rows, cols) and the total weight (y, x).

    Each patch contributes with its Hann window times its weight, so a pixel takes after the
    patches that saw it most. Separable: spread along y (a small product), then add each
    patch column's window in place (a loop over columns, not patches; no multi-threaded BLAS
    call, which is slow inside dask threads on a busy machine).
    """
    wy = grid.placement(0)
    both = _add_columns(np.stack([wy.T @ (weights * values), wy.T @ weights]), grid)
    summed, total = both[0], both[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, summed / np.where(total > 0, total, 1.0), np.nan)
    return mean, total


def _add_columns(columns: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(..., ny, patch columns) -> (..., ny, nx): each column times its window, added in place."""
    window = np.hanning(grid.patch + 2)[1:-1].astype(np.float32)
    columns = columns.astype(np.float32)
    out = np.zeros((*columns.shape[:-1], grid.shape[1]), dtype=np.float32)
    term = np.empty((*columns.shape[:-1], grid.patch), dtype=np.float32)
    for j, start in enumerate(grid.starts_x):
        np.multiply(columns[..., j:j + 1], window, out=term)
        out[..., start:start + grid.patch] += term
    return out


def fill_nearest(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` with every pixel outside ``known`` taken from the nearest known pixel."""
    if known.all():
        return values
    if not known.any():
        raise ValueError("fill_nearest needs at least one known pixel")
    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return values[iy, ix]


def smooth_within(values: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing of ``values`` using only pixels in ``mask`` (normalised convolution);
    pixels with no masked neighbour keep their value."""
    if sigma_px <= 0 or not mask.any():
        return values
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(np.where(mask, values, 0.0), sigma_px, mode="nearest")
    den = ndimage.gaussian_filter(m, sigma_px, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / np.where(den > 1e-6, den, 1.0), values)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative ``weights`` (>= 0, not all 0) of sorted ``values``
    reach half their sum."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
