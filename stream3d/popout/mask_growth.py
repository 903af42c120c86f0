"""Where the material mask must reach beyond what the thickness map's noise threshold keeps.

Two ways the threshold loses material it should not: a round object thins out gradually, so
its edges fall under the threshold well inside the material (a missed column costs its whole
height); and phase contrast hardly transfers the middle of a wide object (at low dose its
texture is lost in the noise too), so the map can leave a gap there.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: px an edge is followed outwards, at most.
TAPER_PX = 8

#: Noise sigmas (of the smoothed map, on the solvent) a followed edge pixel must exceed.
TAPER_SIGMAS = 2.0

#: px, Gaussian smoothing of the thickness map before an edge is followed.
TAPER_SMOOTH_PX = 1.5

#: px, width of a crack through which a gap may reach the solvent and still be filled; also
#: the width of the material around a gap whose median thickness fills it.
GAP_RING_PX = 3


def follow_taper(mask: np.ndarray, thickness: np.ndarray, solvent: np.ndarray,
                 valid: np.ndarray) -> np.ndarray:
    """``mask`` grown, by up to :data:`TAPER_PX`, over connected pixels whose smoothed
    ``thickness`` (Å) is above :data:`TAPER_SIGMAS` x its noise on the ``solvent`` pixels
    (hysteresis: the noise threshold seeds, this lower level follows)."""
    smooth = ndimage.gaussian_filter(thickness, TAPER_SMOOTH_PX)
    low = TAPER_SIGMAS * float(smooth[solvent].std())
    return ndimage.binary_dilation(mask, iterations=TAPER_PX, mask=(smooth >= low) & valid) | mask


def fill_gaps(mask: np.ndarray, thickness: np.ndarray, floor: float,
              valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask with the gaps it encloses filled, thickness Å with each gap at the median of the
    material around it and at least ``floor``, the gaps).

    Solvent enclosed by one object is far less likely than material the map did not see. A
    gap may open to the solvent through a crack up to ~2 x :data:`GAP_RING_PX` px wide.
    """
    pad = GAP_RING_PX
    sealed = ndimage.binary_closing(np.pad(mask, pad), iterations=pad)
    gaps = ndimage.binary_fill_holes(sealed)[pad:-pad, pad:-pad] & ~mask & valid
    if not gaps.any():
        return mask, thickness, gaps
    labels, count = ndimage.label(gaps)
    ring = ndimage.grey_dilation(labels, size=(2 * pad + 1,) * 2) * mask
    fill = np.full(count + 1, float(floor))
    for label in range(1, count + 1):
        around = thickness[ring == label]
        if around.size:
            fill[label] = max(float(np.median(around)), floor)
    return mask | gaps, np.where(gaps, fill[labels], thickness), gaps
