"""Before a movie is replayed: take its calibrations, check the dose, resolve ``dose = "auto"``."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.io.calibration import apply, calibrate, counted_dose, dose_messages

log = logging.getLogger("stream3d.io")


def prepare_replay(movie: str | Path, config: Config) -> Config:
    """``config`` with the movie's pixel size and frame interval (file metadata first, the
    config otherwise), and its dose checked against frame 0 (or estimated from it when
    ``detector.dose = "auto"``). Says once, on the log, what was used and what disagrees."""
    from stream3d.io.movies import open_movie

    frames = open_movie(movie)
    try:
        meta = frames.meta
        first = np.asarray(frames[0]) if len(frames) else None
    finally:
        frames.close()
    name = Path(movie).name
    cal = calibrate(meta, config, name=name)
    for message in cal.messages:
        log.warning("%s", message)
    if meta.pixel_size is not None or meta.frame_interval is not None:
        log.warning("%s: pixel size %.4g Å (%s), frame interval %.4g s (%s)", name,
                    cal.pixel_size, _said(cal.pixel_size_from), cal.frame_interval,
                    _said(cal.frame_interval_from))
    config = apply(config, cal)
    if first is None:
        return config
    return checked_dose(config, first, name)


def checked_dose(config: Config, frame: np.ndarray, name: str = "frame") -> Config:
    """``config`` with ``dose = "auto"`` replaced by the frame's counted dose (e/Å²); a numeric
    dose that disagrees with the counts by > 20% is reported once."""
    dose = config.detector.dose
    size = config.sample.pixel_size
    if dose == "auto":
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


def _said(source: str) -> str:
    return "file metadata" if source == "metadata" else "config"
