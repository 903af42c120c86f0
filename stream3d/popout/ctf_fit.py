"""Vectorised Thon-ring fit of many patch profiles at once: grid search, then local refinement.

For each candidate defocus the weighted linear model  profile = c0 + c1 E + A ring_d  is fitted
to every patch in closed form (one matrix product for all patches and candidates). The score
is the fraction of the non-smooth variance that the rings explain (R^2, with A > 0 required:
a negative ring amplitude would put maxima where the physics puts zeros). The best candidate
is refined by a parabola through its neighbours; the curvature of that parabola gives the
defocus uncertainty, which is what the confidence is built from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream3d.popout.ctf_model import ThonModel

#: Radially binned periodogram values are correlated over ~2 bins (window blur and
#: BINS_PER_PIXEL), so the independent samples are about half the bins.
_BINS_PER_SAMPLE = 2.0

#: Linear parameters of every candidate's fit (c0, c1 and A of the module doc's model): the
#: degrees of freedom they take from the residual (a count, not a tuning).
_LINEAR_PARAMETERS = 3.0

#: Grid steps: another local maximum of the score this close to the best is its shoulder, not a
#: second solution. Set by hand on the accuracy suite's seed 0.
_SHOULDER_STEPS = 2


@dataclass(frozen=True)
class FitDesign:
    """Everything about the fit that is shared by all patches of one frame."""

    defoci: np.ndarray  # (nd,) Å, ascending, evenly spaced
    weights: np.ndarray  # (bins,) row weights ~ sqrt(pixels) / expected power
    projector: np.ndarray  # (bins, bins) removes the weighted smooth part
    rings: np.ndarray  # (nd, bins) weighted, projected ring columns
    rings_norm2: np.ndarray  # (nd,) their squared norms
    dof: float  # independent samples left after the fit
    # (bins,) power every profile holds besides its own rings (support membranes: see
    # stream3d.popout.membrane), taken out before the fit; None = nothing.
    background: np.ndarray | None = None


@dataclass(frozen=True)
class PatchFits:
    """Per-patch fit results (all (n,) arrays)."""

    defocus: np.ndarray  # Å, best effective defocus
    sigma: np.ndarray  # Å, 1-sigma uncertainty of the defocus (inf when the fit failed)
    score: np.ndarray  # R^2 in [0, 1] of the rings at the best defocus
    ambiguity: np.ndarray  # best score of any other local maximum / best score, in [0, 1]
    amplitude: np.ndarray  # ring amplitude A (power units of the profile)


def fit_design(model: ThonModel, counts: np.ndarray, noise: float, signal: float,
               background: np.ndarray | None = None) -> FitDesign:
    """The shared fit set-up for profiles whose expected level is noise + signal x E(k)
    (+ ``background``, a known spectrum under every profile, removed before fitting).

    ``counts`` are the pixels per radial bin; weights are sqrt(counts) / expected power, the
    inverse standard deviation of a bin's mean periodogram.
    """
    expected = noise + max(signal, 0.0) * model.level / 2.0
    if background is not None:  # its speckle is noise to the fit: it widens every bin
        expected = expected + background
    weights = np.sqrt(counts) / np.maximum(expected, 1e-30 + 1e-12 * expected.max())
    smooth = np.stack([np.ones_like(model.level), model.level], axis=1) * weights[:, None]
    q, _ = np.linalg.qr(smooth)
    projector = np.eye(len(weights)) - q @ q.T
    rings = (model.rings * weights) @ projector
    dof = max(len(weights) / _BINS_PER_SAMPLE - _LINEAR_PARAMETERS, 1.0)
    return FitDesign(model.defoci, weights, projector, rings, (rings**2).sum(axis=1), dof,
                     background)


def fit_profiles(profiles: np.ndarray, design: FitDesign) -> PatchFits:
    """Fit every row of ``profiles`` (n, bins) against every candidate defocus."""
    if design.background is not None:
        profiles = profiles - design.background
    weighted = profiles * design.weights
    r = weighted @ design.projector  # (n, bins) residual after the smooth part
    total = np.einsum("ij,ij->i", r, r)
    # A spectrum the smooth part explains to rounding error has no rings at all.
    flat = total <= 1e-20 * np.einsum("ij,ij->i", weighted, weighted)
    c = r @ design.rings.T  # (n, nd)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where((c > 0) & ~flat[:, None], c**2 / (design.rings_norm2 * total[:, None]), 0.0)
    score = np.nan_to_num(score, nan=0.0)
    n, nd = score.shape
    rows = np.arange(n)
    best = score.argmax(axis=1)
    step = design.defoci[1] - design.defoci[0] if nd > 1 else 1.0
    inner = np.clip(best, 1, nd - 2) if nd >= 3 else best
    if nd >= 3:
        a, b, cc = score[rows, inner - 1], score[rows, inner], score[rows, inner + 1]
        curvature = (a - 2 * b + cc) / step**2  # d2 R^2 / d defocus^2, < 0 at a peak
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = np.where(curvature < 0, 0.5 * (a - cc) / (a - 2 * b + cc), 0.0)
        offset = np.where(best == inner, np.clip(offset, -1.0, 1.0), 0.0)
    else:
        curvature = np.zeros(n)
        offset = np.zeros(n)
    defocus = design.defoci[inner] + offset * step
    peak = score[rows, best]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Profile likelihood: Delta RSS / s^2 = 1 at one sigma, RSS = total (1 - R^2).
        var = 2.0 * (1.0 - peak) / (design.dof * -curvature)
    on_edge = (best == 0) | (best == nd - 1)
    sigma = np.where((curvature < 0) & (peak > 0) & ~on_edge, np.sqrt(np.abs(var)), np.inf)
    amplitude = np.where(design.rings_norm2[best] > 0, c[rows, best] / design.rings_norm2[best], 0.0)
    return PatchFits(defocus, sigma, peak, _ambiguity(score, best), amplitude / design.weights.mean())


def _ambiguity(score: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Best score among the other local maxima, relative to the global one (0 = unique)."""
    n, nd = score.shape
    if nd < 3:
        return np.zeros(n)
    padded = np.pad(score, ((0, 0), (1, 1)), constant_values=-1.0)
    peaks = (padded[:, 1:-1] > padded[:, :-2]) & (padded[:, 1:-1] >= padded[:, 2:])
    near = np.abs(np.arange(nd)[None, :] - best[:, None]) <= _SHOULDER_STEPS
    other = np.where(peaks & ~near, score, 0.0).max(axis=1)
    best_score = score[np.arange(n), best]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(best_score > 0, np.clip(other / best_score, 0.0, 1.0), 1.0)
