"""The lens from the data: effective defocus, two-fold astigmatism and dose from the frames.

A CTFFIND-like fit (Rohou & Grigorieff 2015) of the Thon rings of one frame's power spectrum, or
of the average spectrum of several frames. The fit reports the dominant scatterer: in a frame
with material at several heights, the rings of whatever scatters most win; calibrate on a region
of support film (``region``) to measure the lens itself.
"""

from stream3d.calibrate.dose import DoseEstimate, estimate_dose
from stream3d.calibrate.ellipse import effective_k2, elliptical_average
from stream3d.calibrate.fit import FitOptions, LensFit, fit_spectrum
from stream3d.calibrate.spectrum import Spectrum, power_spectrum
from stream3d.calibrate.track import FocusTracker, FrameLens

__all__ = [
    "DoseEstimate", "estimate_dose", "effective_k2", "elliptical_average", "FitOptions",
    "LensFit", "fit_spectrum", "Spectrum", "power_spectrum", "FocusTracker", "FrameLens",
]
