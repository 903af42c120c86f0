"""Material / solvent segmentation of a thickness map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def material_mask(thickness: np.ndarray, *, threshold: float, min_area_px: float) -> np.ndarray:
    """Pixels with more than ``threshold`` Å of material, without specks or pin-holes smaller
    than ``min_area_px`` pixels (noise, not structure)."""
    mask = thickness > threshold
    if min_area_px <= 1:
        return mask
    mask = _drop_small(mask, min_area_px)
    holes = _drop_small(~mask, min_area_px)
    return ~holes


def _drop_small(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())
    keep = areas >= min_area_px
    keep[0] = False
    return keep[labels]
