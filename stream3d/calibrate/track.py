"""Following the focus through a movie: one lens fit per frame, each started from the last.

Heating holders and liquid cells drift in z, so the effective defocus of a movie's support film
changes from frame to frame. :class:`FocusTracker` is what a pipeline hook would call per frame
(``microscope.track_defocus``: :mod:`stream3d.stream.insitu`): it never raises on a frame without rings, it
keeps the last good lens instead and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stream3d.calibrate.fit import FitOptions, LensFit, fit_spectrum
from stream3d.calibrate.spectrum import crop_region, power_spectrum
from stream3d.config import Config


@dataclass(frozen=True)
class FrameLens:
    """The lens one frame was fitted with (Å, degrees); ``fit`` None when it kept the last."""

    defocus: float
    astigmatism: float
    astigmatism_angle: float
    fit: LensFit | None
    error: str = ""


class FocusTracker:
    """Per-frame lens fits of a movie (``region`` y0,x0,y1,x1 px or None; ``tile`` px;
    ``bare``: fit only that share of each frame's tiles with least contrast, see
    :func:`stream3d.calibrate.spectrum.frame_power`)."""

    def __init__(self, options: FitOptions, *, pixel_size: float,
                 start: tuple[float, float, float] | None = None,
                 region: tuple[int, int, int, int] | None = None,
                 tile: int | None = None, bare: float | None = None) -> None:
        self.options, self.pixel_size = options, float(pixel_size)
        self.region, self.tile, self.bare = region, tile, bare
        self.last = start  # (defocus Å, C12 Å, phi12 degrees) of the last good fit

    def update(self, frame: np.ndarray) -> FrameLens:
        """Fit ``frame`` (raw counts); on failure keep the last lens (NaN before any)."""
        try:
            spectrum = power_spectrum([crop_region(np.asarray(frame), self.region)],
                                      pixel_size=self.pixel_size, tile=self.tile, bare=self.bare)
            fit = fit_spectrum(spectrum, self.options, start=self.last)
        except ValueError as exc:
            d, c, a = self.last if self.last is not None else (math.nan,) * 3
            return FrameLens(d, c, a, None, str(exc))
        self.last = (fit.defocus, fit.astigmatism, fit.astigmatism_angle)
        return FrameLens(*self.last, fit)

    @staticmethod
    def config_for(config: Config, lens: FrameLens) -> Config:
        """``config`` with the frame's lens (unchanged when the lens is unknown)."""
        if not math.isfinite(lens.defocus):
            return config
        return config.replace("microscope", defocus=lens.defocus, astigmatism=lens.astigmatism,
                              astigmatism_angle=lens.astigmatism_angle)

