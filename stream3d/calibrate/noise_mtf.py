"""The detector's MTF from the noise power spectrum (NPS) of its frames: the noise method.

Shot noise arrives white (each electron an independent Poisson event). A camera that spreads
each event over its neighbours before reading it out (a scintillator's light, charge sharing)
blurs the noise exactly as it blurs the signal, so the NPS of a featureless region (vacuum, or
solvent far from material) is the white level times MTF²(f):

    MTF(f) = sqrt(NPS(f) / NPS(f -> 0))

(e.g. McMullan et al., Ultramicroscopy 109, 1144 (2009); the NPS side of DQE = MTF² / NNPS).
Normalising at low frequency cancels the camera's gain (counts per electron). With two or more
frames, differences of consecutive frames remove anything static (the specimen, a gain
pattern) and leave twice the noise. Limits: an electron-counting camera that localises each
event exactly has white noise (its pixel's sinc is not seen in the NPS; give it
``detector.mtf = "counting"``); a specimen that changes between frames leaks into the
differences (use ``--region`` on vacuum or solvent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream3d.errors import UserError

#: Frequencies (units of Nyquist) below which the NPS is fitted for the white level (DC excluded).
LOW = 0.25


@dataclass(frozen=True)
class NoiseMTF:
    """The measured MTF on radial bins: ``frequency`` in units of Nyquist (0.5 cycles/px),
    ``mtf`` (1 at low frequency), ``half`` (frequency / Nyquist where it falls to 0.5; NaN if it
    never does), ``gain`` (white noise level / mean counts: 1 for unit-gain Poisson counts)."""

    frequency: np.ndarray
    mtf: np.ndarray
    half: float
    gain: float

    def as_dict(self) -> dict:
        return {"mtf_frequency": [round(float(f), 4) for f in self.frequency],
                "mtf": [round(float(m), 4) for m in self.mtf],
                "mtf_half": self.half, "noise_gain": self.gain}


def noise_power(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """2D NPS (ny, nx) per pixel (counts² ... a white Poisson field gives its mean) and the
    frames' mean counts. Two or more frames: consecutive differences / sqrt(2)."""
    stack = [np.asarray(f, dtype=np.float64) for f in frames]
    mean = float(np.mean([f.mean() for f in stack]))
    if len(stack) >= 2:
        fields = [(a - b) / math.sqrt(2.0) for a, b in zip(stack[:-1], stack[1:])]
    else:
        fields = [stack[0] - stack[0].mean()]
    size = fields[0].size
    nps = np.mean([np.abs(np.fft.fft2(f - f.mean())) ** 2 / size for f in fields], axis=0)
    return nps, mean


def measure_noise_mtf(frames: Sequence[np.ndarray], *, bins: int = 25) -> NoiseMTF:
    """The MTF from the NPS of ``frames`` (raw counts of one featureless region, (y, x) each);
    ``bins`` radial bins from 0 to Nyquist. UserError when the frames hold no counts."""
    nps, mean = noise_power(frames)
    if not mean > 0:
        raise UserError("the frames hold no counts: the noise MTF needs a bright region "
                        "(vacuum or solvent)")
    ny, nx = nps.shape
    f = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]) * 2.0  # / Nyquist
    low = (f > 0) & (f < LOW)
    if low.sum() < 8:
        raise UserError(f"a {ny} x {nx} px region is too small for the noise MTF (>= 64 px)")
    # The white level is the NPS extrapolated to f = 0: a fit of a + b f² + c f⁴ below LOW
    # (a plain mean there is already lowered by a steep MTF).
    x = f[low] ** 2
    design = np.stack([np.ones_like(x), x, x * x], axis=1)
    white = float(np.linalg.lstsq(design, nps[low], rcond=None)[0][0])
    if not white > 0:
        white = float(nps[low].mean())
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(f.ravel(), edges) - 1
    keep = (index >= 0) & (index < bins) & (f.ravel() > 0)
    total = np.bincount(index[keep], weights=nps.ravel()[keep], minlength=bins)
    count = np.bincount(index[keep], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        power = total / count
    centres = 0.5 * (edges[:-1] + edges[1:])
    mtf = np.sqrt(np.clip(power / white, 0.0, None))
    mtf[0] = 1.0 if count[0] else mtf[0]
    return NoiseMTF(centres, mtf, _half(centres, mtf), white / mean)


def _half(frequency: np.ndarray, mtf: np.ndarray) -> float:
    """First frequency where ``mtf`` falls to 0.5 (linear between bins); NaN if never."""
    below = np.flatnonzero(mtf < 0.5)
    if below.size == 0 or below[0] == 0:
        return math.nan
    i = below[0]
    f0, f1, m0, m1 = frequency[i - 1], frequency[i], mtf[i - 1], mtf[i]
    return float(f0 + (m0 - 0.5) * (f1 - f0) / (m0 - m1))
