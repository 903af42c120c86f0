"""Patch-grid results -> per-pixel maps: confidence, window-weighted spreading, hole filling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stream3d.popout.ctf_fit import PatchFits
from stream3d.popout.patches import PatchGrid


def patch_confidence(fits: PatchFits, rings: np.ndarray, *, tolerance: float,
                     min_rings: float) -> np.ndarray:
    """Confidence in [0, 1] of each patch's depth.

    The product of three factors: precision 1 / (1 + (sigma / tolerance)^2) (0.5 at sigma =
    tolerance Å); enough Thon rings in the band (a ramp from min_rings - 0.5 to min_rings + 0.5:
    near Scherzer focus the rings are too few to locate); and uniqueness (a second local
    maximum scoring above half the best one means two depths fit about equally).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        precision = 1.0 / (1.0 + (fits.sigma / tolerance) ** 2)
    precision = np.nan_to_num(precision, nan=0.0)
    enough_rings = np.clip(rings - min_rings + 0.5, 0.0, 1.0)
    unique = np.clip(2.0 * (1.0 - fits.ambiguity), 0.0, 1.0)
    return np.clip(precision * enough_rings * unique, 0.0, 1.0)


def spread(values: np.ndarray, weights: np.ndarray, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel weighted mean of patch ``values`` (rows, cols) and the total weight (y, x).

    Each patch contributes with its Hann window times its weight, so a pixel takes after the
    patches that saw it most. Separable: two small matrix products, no loop over patches.
    """
    wy, wx = grid.placement(0), grid.placement(1)
    total = wy.T @ weights @ wx
    summed = wy.T @ (weights * values) @ wx
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, summed / np.where(total > 0, total, 1.0), np.nan)
    return mean, total


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
