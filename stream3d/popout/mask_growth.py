"""Where the material mask must reach beyond what the thickness map's noise threshold keeps.

Two ways the threshold loses material it should not: a round object thins out gradually, so
its edges fall under the threshold well inside the material (a missed column costs its whole
height); and phase contrast hardly transfers the middle of a wide object (at low dose its
texture is lost in the noise too), so the map can leave a gap there. Growth stops at a
neighbour: two objects the threshold sees apart stay apart (:func:`keep_apart`), since the
lens's fringes and the texture mask reach across a gap of a few px and would merge them.
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

#: Two thickness maxima are one object when the thickness between them never drops below this
#: share of the lower one (a branch on a trunk); below it, a gap the map's resolution blurred
#: (two discs 4 px apart dip to ~0.4 of their thickness at 2.5 Å resolution).
NECK_SHARE = 0.6

#: The same for two maxima whose heights differ (by 2 x popout.tolerance): discs 2.5 px apart
#: at 2.5 Å resolution dip to ~0.6 only.
HEIGHT_NECK_SHARE = 0.85

#: A neck's line is at most this share of the smaller basin's width (sqrt of its area).
NECK_LENGTH = 0.5

#: Thickness maxima seed the watershed when they rise this share of the noise threshold above
#: their surroundings (lower, and the noise's own bumps seed basins). Set by hand on the
#: accuracy suite's seed 0.
PEAK_PROMINENCE = 0.5

#: popout.tolerances by which two basins' heights must differ to count as two objects at
#: different heights (:data:`HEIGHT_NECK_SHARE`). Set by hand on the accuracy suite's seed 0.
APART_TOLERANCES = 2

#: px: seed pieces at most this far apart (centre to centre) may be one object with a crack
#: (the thickness map's noise dips under the threshold inside a disc, ~3 px wide); a neck cut
#: by :func:`split_necks` is wider, so the objects it separates stay apart.
MIN_GAP_PX = 4

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


def keep_apart(grown: np.ndarray, seeds: np.ndarray, height: np.ndarray,
               tolerance: float) -> np.ndarray:
    """``grown`` (a superset of ``seeds`` grown by rules that know nothing of neighbours)
    without the pixels where two objects of ``seeds`` would meet.

    Seed pieces closer than :data:`MIN_GAP_PX` whose median ``height`` (Å) agrees within
    ``tolerance`` Å are one object (a crack the thickness map's noise left, not a gap). Each
    grown pixel belongs to its nearest object (Euclidean); a pixel with a neighbour (3 x 3)
    that belongs to another object is solvent, so objects apart in ``seeds`` stay apart, by a
    line of at least one px on each side.
    """
    pieces, count = ndimage.label(seeds)
    if count < 2:
        return grown
    _, (iy, ix) = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
    nearest = pieces[iy, ix]
    parent = list(range(count + 1))
    levels = ndimage.median(height, pieces, index=np.arange(count + 1))
    near = ndimage.distance_transform_edt(~seeds) <= MIN_GAP_PX / 2
    for a, b in _touching(np.where(near, nearest, 0), count):
        if abs(levels[a] - levels[b]) <= tolerance:
            parent[_root(parent, a)] = _root(parent, b)
    objects = np.array([_root(parent, i) for i in range(count + 1)])
    owner = np.where(grown, objects[nearest], 0)
    higher = ndimage.maximum_filter(owner, size=3) != owner
    lower = ndimage.minimum_filter(np.where(owner > 0, owner, count + 1), size=3) != owner
    return grown & ~((higher | lower) & (owner > 0))


def _touching(labels: np.ndarray, count: int) -> set[tuple[int, int]]:
    """Pairs (a, b), a < b, of labels > 0 that are 8-neighbours somewhere in ``labels``."""
    high = ndimage.maximum_filter(labels, size=3)
    low = ndimage.minimum_filter(np.where(labels > 0, labels, count + 1), size=3)
    meet = (labels > 0) & (high != low) & (low <= count)
    return {(int(a), int(b)) for a, b in zip(low[meet], high[meet]) if a != b}


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def split_necks(mask: np.ndarray, thickness: np.ndarray, depth: float,
                height: np.ndarray | None = None, tolerance: float = np.inf) -> np.ndarray:
    """``mask`` cut along the necks where two objects that the thickness map's resolution
    blurred together meet.

    Maxima of ``thickness`` (Å) at least :data:`PEAK_PROMINENCE` x ``depth`` Å above their
    surroundings seed a watershed of the mask; basins are joined in order of decreasing saddle
    (the highest thickness on the line between them), so the noise's basins inside an object
    join first. Two groups stay apart when they meet along a short line (a neck,
    :data:`NECK_LENGTH`: the noise's dips across a plate meet along long lines) and their
    saddle is below :data:`NECK_SHARE` x the lower of their peaks, or below
    :data:`HEIGHT_NECK_SHARE` x it while their ``height`` (Å) differs by more than
    :data:`APART_TOLERANCES` x ``tolerance`` Å (two objects at different heights, 2-3 px
    apart: one object's height does not jump at a neck).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    if not mask.any() or depth <= 0:
        return mask
    t = np.where(mask, thickness, 0.0)
    markers, count = ndimage.label(h_maxima(t, PEAK_PROMINENCE * depth) & mask)
    if count < 2:
        return mask
    basins = watershed(-t, markers, mask=mask, watershed_line=True)
    index = np.arange(count + 1)
    peak = np.asarray(ndimage.maximum(t, basins, index=index), dtype=float)
    area = np.bincount(basins.ravel(), minlength=count + 1).astype(float)
    level = (np.asarray(ndimage.median(height, basins, index=index), dtype=float)
             if height is not None else np.zeros(count + 1))
    line = mask & (basins == 0)
    high = ndimage.maximum_filter(basins, size=3)
    low = ndimage.minimum_filter(np.where(basins > 0, basins, count + 1), size=3)
    pairs = line & (high > 0) & (low <= count) & (high != low)
    saddle: dict[tuple[int, int], float] = {}
    length: dict[tuple[int, int], int] = {}
    for a, b, value in zip(low[pairs], high[pairs], t[pairs]):
        key = (int(a), int(b))
        saddle[key] = max(saddle.get(key, 0.0), float(value))
        length[key] = length.get(key, 0) + 1
    parent = list(range(count + 1))
    for (a, b), value in sorted(saddle.items(), key=lambda item: -item[1]):
        ra, rb = _root(parent, a), _root(parent, b)
        if ra == rb:
            continue
        between = sum(n for (x, y), n in length.items()
                      if {_root(parent, x), _root(parent, y)} == {ra, rb})
        share = value / min(peak[ra], peak[rb])
        neck = between <= NECK_LENGTH * np.sqrt(min(area[ra], area[rb]))
        apart = abs(level[ra] - level[rb]) > APART_TOLERANCES * tolerance
        if neck and share < (HEIGHT_NECK_SHARE if apart else NECK_SHARE):
            continue
        parent[ra] = rb
        peak[rb] = max(peak[ra], peak[rb])
        level[rb] = (level[ra] * area[ra] + level[rb] * area[rb]) / (area[ra] + area[rb])
        area[rb] += area[ra]
    merged = np.array([_root(parent, i) for i in range(count + 1)])[basins]
    # A line pixel between basins of one object is that object's again; a neck between two
    # objects is cut MIN_GAP_PX wide (the gap the resolution blurred).
    split = line & (ndimage.maximum_filter(merged, size=3) !=
                    ndimage.minimum_filter(np.where(merged > 0, merged, count + 1), size=3))
    cut = ndimage.distance_transform_edt(~split) <= MIN_GAP_PX / 2
    return mask & ~cut
