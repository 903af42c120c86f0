"""Check a raw frame against the config and turn detector counts into intensity (vacuum = 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError

#: Frames whose dose-normalised mean falls outside this range disagree with detector.dose.
_PLAUSIBLE_MEAN = (0.2, 5.0)

#: px, the smallest popout.patch the too-small-frame error suggests (a round figure for a
#: message: fewer pixels leave too few radial bins for a ring fit).
_SMALLEST_PATCH = 16


@dataclass(frozen=True)
class Normalised:
    """Intensity (y, x) float64 with vacuum ~1, the mask of usable pixels, and warnings."""

    intensity: np.ndarray
    valid: np.ndarray
    #: Detector counts that make intensity 1 (Poisson noise variance of intensity I = I / this).
    counts_per_unit: float
    messages: tuple[str, ...]
    #: False when nothing in the frame can be measured (all zero, all NaN, no contrast).
    usable: bool


def check_frame(frame: object, config: Config) -> np.ndarray:
    """``frame`` as a 2-D array, or a :class:`UserError` saying what is wrong with its shape.

    Shape problems are the caller's mistake and are raised before any work is scheduled;
    bad *values* (NaN, all zero) are not errors but give a low-confidence result.
    """
    try:
        array = np.asarray(frame)
    except Exception as exc:  # noqa: BLE001 - anything that is not array-like
        raise UserError(f"frame must be a 2-D array of detector counts, got {type(frame).__name__}: {exc}") from None
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise UserError(f"frame must hold numbers (detector counts), got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise UserError("frame must be real detector counts, got a complex array")
    if array.ndim != 2:
        hint = " (a stack of frames? pass one (y, x) frame at a time)" if array.ndim == 3 else ""
        raise UserError(f"frame must be 2-D (y, x), got shape {array.shape}{hint}")
    patch = config.popout.patch
    if min(array.shape) < patch:
        raise UserError(f"frame {array.shape[0]}x{array.shape[1]} px is smaller than popout.patch = "
                        f"{patch} px; lower popout.patch (e.g. --set popout.patch={_fit_patch(array.shape)})")
    return array


def _fit_patch(shape: tuple[int, ...]) -> int:
    """The largest power of two that fits the frame, at least :data:`_SMALLEST_PATCH` (a
    suggestion for the user)."""
    edge = max(_SMALLEST_PATCH, min(shape))
    return int(2 ** np.floor(np.log2(edge)))


def normalise(frame: np.ndarray, config: Config) -> Normalised:
    """Counts / (dose x pixel area): intensity relative to vacuum.

    Non-finite pixels are replaced by the median of the finite ones and marked invalid. If the
    mean disagrees with ``detector.dose`` by more than a factor of 5 the frame is normalised by
    its own median instead (the dose is then wrong for this frame) and a warning is returned.
    """
    counts = np.asarray(frame, dtype=np.float64)
    valid = np.isfinite(counts)
    messages: list[str] = []
    n_bad = int(valid.size - valid.sum())
    if n_bad == valid.size:
        return Normalised(np.ones_like(counts), valid, 1.0, ("frame has no finite pixels",), False)
    if n_bad:
        messages.append(f"{n_bad} non-finite pixel(s) ignored")
        counts = np.where(valid, counts, np.median(counts[valid]))
    expected = config.detector.dose * config.sample.pixel_size**2
    intensity = counts / expected
    mean = float(intensity[valid].mean())
    if not mean > 0 or float(np.ptp(counts[valid])) == 0:
        what = "all zero" if not np.any(counts[valid]) else "constant" if mean > 0 else "not positive"
        return Normalised(np.ones_like(counts), valid, expected,
                          (*messages, f"frame is {what}: no contrast to measure"), False)
    lo, hi = _PLAUSIBLE_MEAN
    if not lo <= mean <= hi:
        messages.append(f"frame mean is {mean:.3g} x the dose of detector.dose = {config.detector.dose:g} "
                        "e/Å²; normalised by the frame's own median instead")
        median = float(np.median(counts[valid]))
        expected = median if median > 0 else float(counts[valid].mean())
        intensity = counts / expected
    return Normalised(intensity, valid, expected, tuple(messages), True)
