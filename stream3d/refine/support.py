"""Where material is: the support the first stage fits, and the homogeneous thickness on it.

A column holds material when its fitted thickness exceeds ``fraction`` of the thickness its
region had at the start (pop-out's, or the previous frame's). The fitted thickness inside the
support also carries the amorphous texture (it mimics the texture's phase), so it is smoothed
within the support over a few pixels, or replaced by each region's median: homogeneous
material, as the prior says.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stream3d.refine.regions import Regions, find_regions, inherit


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` (4-connected steps)."""
    mask = np.asarray(mask, dtype=bool)
    return ndimage.binary_dilation(mask, iterations=pixels) if pixels > 0 else mask


def reference_thickness(regions: Regions, thickness: np.ndarray) -> np.ndarray:
    """Every column gets the median start thickness (Å) of its nearest region (0 if none)."""
    everywhere = inherit(regions, np.ones(regions.labels.shape, dtype=bool))
    medians = np.zeros(regions.count + 1)
    for r in range(1, regions.count + 1):
        values = thickness[regions.labels == r]
        medians[r] = np.median(values) if values.size else 0.0
    return medians[everywhere.labels]


def fitted_support(fitted: np.ndarray, threshold: np.ndarray, min_area: int) -> np.ndarray:
    """Columns thicker than ``threshold``, without specks smaller than ``min_area`` pixels."""
    support = fitted > threshold
    labels, count = ndimage.label(support)
    if count:
        areas = np.bincount(labels.ravel())
        support &= areas[labels] >= min_area
    return support


def smooth_within(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (``sigma`` px) of ``values`` using only the columns in ``mask``
    (normalised convolution: the edge of the mask does not pull values towards zero)."""
    weight = mask.astype(np.float64)
    num = ndimage.gaussian_filter(np.where(mask, values, 0.0).astype(np.float64), sigma)
    den = ndimage.gaussian_filter(weight, sigma)
    return np.where(mask, num / np.maximum(den, 1e-12), 0.0)


def material_thickness(start: Regions, start_thickness: np.ndarray, start_height: np.ndarray,
                       fitted: np.ndarray, *, fraction: float, jump: float, size: int = 0,
                       min_area: int = 1, smoothing: float = 0.0) -> tuple[np.ndarray, Regions]:
    """Thickness map (Å) of homogeneous material on the fitted support, and its regions.

    Regions are the connected parts of the fitted support, cut where the start's heights jump
    by ``jump`` Å or more (and tiled into ``size``-pixel blocks when ``size`` > 0): the sharp
    refined support separates neighbours that the start had blurred together. The thickness
    is the fitted one smoothed within the support (``smoothing`` px), or with ``smoothing`` 0
    each region's median fitted thickness.
    """
    threshold = fraction * reference_thickness(start, start_thickness)
    support = fitted_support(fitted, threshold, min_area)
    regions = find_regions(support, start_height, jump=jump, size=size, min_area=min_area)
    if smoothing > 0:
        return smooth_within(fitted, support, smoothing).astype(np.float32), regions
    thickness = np.zeros_like(fitted, dtype=np.float64)
    for r in range(1, regions.count + 1):
        inside = regions.labels == r
        thickness[inside] = np.median(fitted[inside])
    return thickness.astype(np.float32), regions


class FitWatch:
    """Stop rule for the fit stage: over the last ``window`` iterations the support changed in
    fewer than ``tolerance`` x its area columns and no column height moved by ``height_step``
    Å or more. Called as stop(iteration, param); returns "settled" then."""

    def __init__(self, start: Regions, start_thickness: np.ndarray, fraction: float,
                 window: int, height_step: float, tolerance: float = 0.002) -> None:
        self.threshold = fraction * reference_thickness(start, start_thickness)
        self.window, self.tolerance, self.height_step = int(window), float(tolerance), height_step
        self.supports: list[np.ndarray] = []
        self.heights: list[np.ndarray] = []

    def __call__(self, iteration: int, param) -> str | None:
        height, thickness = (c.cpu().numpy() for c in param.columns())
        support = thickness > self.threshold
        self.supports.append(support)
        self.heights.append(np.where(support, height, 0.0))
        if len(self.supports) <= self.window:
            return None
        old_support, old_height = self.supports.pop(0), self.heights.pop(0)
        flips = int((support != old_support).sum())
        both = support & old_support
        moved = float(np.abs(self.heights[-1] - old_height)[both].max(initial=0.0))
        if flips <= self.tolerance * max(int(support.sum()), 1) and moved < self.height_step:
            return "settled"
        return None
