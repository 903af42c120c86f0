"""Two layers in the same columns: an object's spectrum unmixed as a sum of two Thon-ring
patterns (the pop-out paper's separation of overlapping layers).

An object whose patches fit heights far apart (:func:`extreme_pair`) may hold two layers.
Where they are stacked, rather than side by side (a tilted plate or a branched dendrite also
spans several heights), is told per patch by the amplitudes of the two fixed ring patterns
(both present, :func:`pair_amplitudes`) and by the thickness map (stacked columns hold more
material than the object's single-layer columns, :func:`stacked_columns`). Where a patch holds
both layers its fit lands between them, a height no single layer has: such thick columns are
stacked too, even where one layer's pattern is too weak to pass the amplitude test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stream3d.popout.ctf_fit import FitDesign
from stream3d.popout.maps import weighted_median

#: Å, the least height difference between two layers that the fit separates.
MIN_SEPARATION = 160.0

#: Weighted quantiles of an object's fitted effective defoci that start its two candidate
#: layers (top, bottom): near the extremes, but not the single worst fits. Set by hand on the
#: accuracy suite's two layers, seed 0 (:func:`extreme_pair` says what the median step added).
EXTREMES = (0.1, 0.9)

#: Most steps of :func:`_centre`'s mode seeking; it settles in a few (a safety bound).
CENTRE_ROUNDS = 10

#: A column is stacked when each layer's ring amplitude there is at least this share of the
#: layer's typical amplitude ...
PRESENT = 0.5

#: ... and it holds this many times the material of the object's single-layer columns
#: (the geometric mean of 1 and 2: stacked columns hold twice the material).
THICKER = 1.4

#: A column's fitted height is "between the layers" (a mixture) when it is at least this share
#: of their separation away from both.
MIXED = 0.25

#: px: stacked patches smaller than an opening of this radius are dropped as noise, and gaps
#: up to a closing of :data:`CLOSE_PX` filled: two layers overlap in one contiguous region.
OPEN_PX = 2
CLOSE_PX = 4


@dataclass(frozen=True)
class LayerPair:
    """Two layers of one object: effective defoci (Å, top first) and their indices on the
    fit design's defocus grid."""

    top: float
    bottom: float
    index: tuple[int, int]


def extreme_pair(defocus: np.ndarray, weights: np.ndarray, design: FitDesign, *,
                 spread: float) -> LayerPair | None:
    """The candidate layers of one object, from its patches' fitted effective defoci (Å):
    the 10th and 90th weighted percentiles (:data:`EXTREMES`), when they are
    :data:`MIN_SEPARATION` apart, each
    then moved to the centre of the fits around it (:func:`_centre`, within ``spread`` Å: a
    fit's typical uncertainty, ``popout.tolerance``).

    The pooled spectrum alone does not pick the pair reliably (the ring model explains only
    part of a real spectrum, and a pair at the edge of the range soaks up the rest), but an
    object that overlaps another usually also shows each layer alone somewhere: its single-layer
    fits span both heights. A percentile of noisy fits lies outside their centre; the median
    nearby does not, and the mixtures between the layers stay out of it. (Measured on the
    suite's two layers, seed 0: the top layer 22 Å too high from the percentile, ~0 from the
    median; the top layer's refined recall 0.54 -> 0.81.)
    """
    if len(defocus) < 2 or weights.sum() <= 0:
        return None
    order = np.argsort(defocus)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    low, high = EXTREMES
    top = float(defocus[order][np.searchsorted(cumulative, low)])
    bottom = float(defocus[order][min(np.searchsorted(cumulative, high), len(order) - 1)])
    if bottom - top < MIN_SEPARATION:
        return None
    top, bottom = (_centre(defocus, weights, around, spread) for around in (top, bottom))
    grid = design.defoci
    index = (int(np.argmin(np.abs(grid - top))), int(np.argmin(np.abs(grid - bottom))))
    return LayerPair(top, bottom, index)


def _centre(values: np.ndarray, weights: np.ndarray, start: float, spread: float,
            rounds: int = CENTRE_ROUNDS) -> float:
    """Mode seeking from ``start`` (one of ``values``): move to the weighted median of the
    values within ``spread`` of the current point until it stays put (at most ``rounds``)."""
    point = start
    for _ in range(rounds):
        near = np.abs(values - point) <= spread
        if not weights[near].sum() > 0:
            break
        moved = weighted_median(values[near], weights[near])
        if moved == point:
            break
        point = moved
    return point


def pair_amplitudes(profiles: np.ndarray, design: FitDesign, pair: LayerPair) -> np.ndarray:
    """Non-negative amplitudes (n, 2) of the pair's two fixed ring patterns in each profile
    (top first), by least squares (a negative one is set to 0 and the other refitted)."""
    rings = design.rings[list(pair.index)]  # (2, bins)
    r = (profiles * design.weights) @ design.projector
    c = r @ rings.T  # (n, 2)
    gram = rings @ rings.T
    both = np.linalg.solve(gram, c.T).T
    alone = np.maximum(c, 0.0) / np.diag(gram)
    fit_top = np.stack([alone[:, 0], np.zeros(len(c))], axis=1)
    fit_bottom = np.stack([np.zeros(len(c)), alone[:, 1]], axis=1)
    out = np.where((both >= 0).all(axis=1)[:, None], both,
                   np.where((alone[:, 0] * c[:, 0] >= alone[:, 1] * c[:, 1])[:, None],
                            fit_top, fit_bottom))
    return out


@dataclass(frozen=True)
class Layers:
    """Stacked columns (bool (y, x)), the two layers' heights (Å above the exit plane, (y, x))
    and the top layer's share of each stacked column's thickness."""

    where: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    top_share: np.ndarray


def stacked_columns(candidates: Layers, labels: np.ndarray, thickness: np.ndarray,
                    height: np.ndarray) -> Layers | None:
    """The stacked columns of every object with two layers; None if there are none.

    A column is stacked when it holds :data:`THICKER` times the material (``thickness``, Å) of
    its object's single-layer columns and either both layers' patterns are present there
    (``candidates.where``) or its fitted ``height`` (Å) lies between the layers (:data:`MIXED`).
    Each object's stacked region is then cleaned to one contiguous region (:data:`OPEN_PX`,
    :data:`CLOSE_PX`, holes filled).
    """
    where = np.zeros_like(candidates.where)
    for label in np.unique(labels[candidates.where]):
        own = labels == label
        single = own & ~candidates.where & (thickness > 0)
        if not single.any():
            continue
        thick = own & (thickness > THICKER * np.median(thickness[single]))
        top, bottom = float(candidates.top[own].max()), float(candidates.bottom[own].min())
        margin = MIXED * (top - bottom)
        between = (height > bottom + margin) & (height < top - margin)
        stacked = thick & (candidates.where | between)
        stacked = ndimage.binary_opening(stacked, iterations=OPEN_PX)
        stacked = ndimage.binary_closing(stacked, iterations=CLOSE_PX)
        where |= ndimage.binary_fill_holes(stacked) & own & (thickness > 0)
    if not where.any():
        return None
    return Layers(where, candidates.top, candidates.bottom, candidates.top_share)
