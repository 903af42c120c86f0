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
    if regions.count == 0:  # no region to take a thickness from (an empty start)
        return np.zeros(regions.labels.shape)
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
    """Stop rule for a fit stage: the material has stopped moving.

    Over the last ``window`` iterations, 95 % of the columns moved by less than ``step`` Å:
    in smoothed thickness (``watch="thickness"``: edges settle and new material has grown;
    smoothing over ``sigma`` px, as the material prior does, ignores the pixel-scale texture
    and noise the free thickness keeps fitting), in height (``watch="height"``: regions stop
    shifting) or both (``watch="both"``). Called as stop(iteration, param); returns "settled"
    then.
    """

    def __init__(self, window: int, step: float, *, watch: str, sigma: float = 2.0) -> None:
        if watch not in ("thickness", "height", "both"):
            raise ValueError(f"watch must be 'thickness', 'height' or 'both', got {watch!r}")
        self.window, self.step, self.watch = int(window), float(step), watch
        self.sigma = max(float(sigma), 1.0)
        self.history: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, iteration: int, param) -> str | None:
        height, thickness = (c.cpu().numpy().astype(np.float64) for c in param.columns())
        smooth = ndimage.gaussian_filter(thickness, self.sigma)
        self.history.append((smooth, height))
        if len(self.history) <= self.window:
            return None
        old_smooth, old_height = self.history.pop(0)
        moved = 0.0
        if self.watch in ("thickness", "both"):
            near = (smooth > self.step) | (old_smooth > self.step)
            moved = max(moved, _p95(np.abs(smooth - old_smooth)[near]))
        if self.watch in ("height", "both"):
            solid = (smooth > 4 * self.step) & (old_smooth > 4 * self.step)
            moved = max(moved, _p95(np.abs(height - old_height)[solid]))
        return "settled" if moved < self.step else None


def _p95(values: np.ndarray) -> float:
    return float(np.percentile(values, 95)) if values.size else 0.0
