"""Before a movie is replayed: take its calibrations, check the dose, resolve ``dose = "auto"``
(the dose rules are :mod:`stream3d.io.dose`'s)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stream3d.config import Config
from stream3d.io.calibration import apply, calibrate
from stream3d.io.dose import checked_dose

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


def _said(source: str) -> str:
    return "file metadata" if source == "metadata" else "config"
