"""Pop-out against ground truth: height errors per region and per pixel, mask overlap.

Used by the tests and benchmarks/popout.py, so both judge pop-out the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stream3d.specimen.geometry import column_height, column_thickness


@dataclass(frozen=True)
class Score:
    """Errors of one pop-out against the occupancy it came from (Å unless noted)."""

    height_mae: float  # mean |height error| over the true material columns
    region_errors: tuple[float, ...]  # |median estimated - median true height| per region
    iou: float  # intersection over union of estimated and true material masks
    thickness_mae: float  # mean |thickness error| over the true material columns
    confidence: float  # mean confidence over the true material columns

    @property
    def worst_region(self) -> float:
        return max(self.region_errors) if self.region_errors else float("nan")


def regions(occupancy: np.ndarray, kind: str, *, tile: int = 64, min_pixels: int = 200) -> list[np.ndarray]:
    """Masks of the regions depth is judged on: each connected piece ("pieces"), vertical
    strips of ``tile`` px across x ("strips", for a slab tilted along x), or square tiles
    ("tiles", for a dendrite); regions with fewer than ``min_pixels`` material pixels are
    left out."""
    material = occupancy.sum(axis=0) > 0
    if kind == "pieces":
        labels, n = ndimage.label(material)
        masks = [labels == i for i in range(1, n + 1)]
    elif kind in ("strips", "tiles"):
        ny, nx = material.shape
        yy, xx = np.indices(material.shape)
        ty = ny if kind == "strips" else tile
        masks = [material & (yy // ty == i) & (xx // tile == j)
                 for i in range(-(-ny // ty)) for j in range(-(-nx // tile))]
    else:
        raise ValueError(f"unknown region kind {kind!r}: 'pieces', 'strips' or 'tiles'")
    return [m for m in masks if m.sum() >= min_pixels]


def score(result, occupancy: np.ndarray, dz: float, kind: str) -> Score:
    """:class:`Score` of a :class:`~stream3d.popout.PopoutResult` against ``occupancy``."""
    true_h = column_height(occupancy, dz)
    true_t = column_thickness(occupancy, dz)
    truth = true_t > 0
    est = result.thickness > 0
    union = (truth | est).sum()
    errs = tuple(float(abs(np.median(result.height[m]) - np.median(true_h[m])))
                 for m in regions(occupancy, kind))
    return Score(
        height_mae=float(np.abs(result.height - true_h)[truth].mean()),
        region_errors=errs,
        iou=float((truth & est).sum() / union) if union else 1.0,
        thickness_mae=float(np.abs(result.thickness - true_t)[truth].mean()),
        confidence=float(result.confidence[truth].mean()),
    )
