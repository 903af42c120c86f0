"""The dose of a run (e/Å² per frame): the one owner of ``detector.dose = "auto"``.

Raw counts have mean dose x pixel_size² (one count per electron). A configured dose is checked
against the first frame's counts (a disagreement over 20%, or a dose the frame's dtype cannot
hold, is reported once); ``"auto"`` is replaced by the counted dose of the first frame compute
or replay sees. Replays resolve it before the run (:func:`stream3d.io.replay.prepare_replay`);
live runs and stores reconstructed in place resolve it on their first frame through
:class:`FirstFrameDose` (held by the compute stages, :mod:`stream3d.stream.pixel_mask`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from stream3d.config import AUTO_DOSE, Config
from stream3d.errors import UserError

log = logging.getLogger("stream3d.io")

DOSE_DISAGREE = 0.20  # relative difference of configured and counted dose that is reported


def is_auto(config: Config) -> bool:
    """Whether ``config`` leaves its dose to the frames (``detector.dose = "auto"``)."""
    return config.detector.dose == AUTO_DOSE


def counted_dose(frame: np.ndarray, pixel_size: float) -> float:
    """e/Å² per frame from a counted frame: mean counts / pixel area (NODATA excluded)."""
    values = np.asarray(frame, dtype=np.float64)
    if np.asarray(frame).dtype.kind in "ui":
        values = values[np.asarray(frame) < np.iinfo(np.asarray(frame).dtype).max]
    values = values[np.isfinite(values)]
    return float(values.mean()) / pixel_size**2 if values.size else math.nan


def dose_messages(configured: float, frame: np.ndarray, pixel_size: float) -> list[str]:
    """Plain warnings when ``configured`` e/Å² disagrees with the frame's counts by > 20% or
    when the frame's dtype cannot hold counts at that dose."""
    out = []
    dtype = np.asarray(frame).dtype
    expected = configured * pixel_size**2  # counts per pixel
    if dtype.kind in "ui" and expected > 0.5 * np.iinfo(dtype).max:
        out.append(f"detector.dose = {configured:g} e/Å² means {expected:.4g} counts per pixel, "
                   f"more than a {dtype} frame holds well (max {np.iinfo(dtype).max})")
    counted = counted_dose(frame, pixel_size)
    if math.isfinite(counted) and abs(counted - configured) > DOSE_DISAGREE * configured:
        out.append(f"detector.dose = {configured:g} e/Å², but the frames' counts say "
                   f"{counted:.4g} e/Å² (mean counts / pixel_size²): check the dose, or set "
                   'detector.dose = "auto"')
    return out


def checked_dose(config: Config, frame: np.ndarray, name: str = "frame") -> Config:
    """``config`` with ``dose = "auto"`` replaced by the frame's counted dose (e/Å²); a numeric
    dose that disagrees with the counts by > 20% is reported once."""
    dose = config.detector.dose
    size = config.sample.pixel_size
    if dose == AUTO_DOSE:
        counted = counted_dose(frame, size)
        if not math.isfinite(counted) or counted <= 0:
            raise UserError(f'detector.dose = "auto": {name} has no counts to estimate the '
                            "dose from; give detector.dose in e/Å²")
        log.warning("%s: detector.dose = \"auto\" -> %.4g e/Å² per frame (mean counts / "
                    "pixel_size²)", name, counted)
        return dataclasses.replace(config, detector=dataclasses.replace(config.detector,
                                                                        dose=counted))
    for message in dose_messages(float(dose), frame, size):
        log.warning("%s: %s", name, message)
    return config


class FirstFrameDose:
    """The run's one decision on its dose, made on the first frame compute sees: later frames
    reuse it (so a run never changes its dose midway)."""

    def __init__(self) -> None:
        self.config: Any = None  # the config with the dose resolved, after the first frame

    def resolve(self, config: Config, frame: np.ndarray) -> Config:
        """``config`` with its dose checked against (or, for "auto", taken from) the first
        frame; later calls keep that first frame's dose but their own config otherwise (a
        frame's tracked lens defocus, say)."""
        if self.config is None:
            self.config = checked_dose(config, frame, "first frame")
        if config == self.config or config.detector.dose == self.config.detector.dose:
            return config
        return config.replace("detector", dose=self.config.detector.dose)
