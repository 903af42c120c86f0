"""``stream3d info FILE [--json]``: what a movie file or a run store holds, in stream3d's units."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from stream3d.config import Config
from stream3d.io.calibration import calibrate
from stream3d.io.dose import counted_dose, dose_messages, is_auto


def movie_info(path: str | Path, config: Config) -> dict[str, Any]:
    """frames, shape [ny, nx], dtype, pixel_size (Å), frame_interval (s), instrument, detector,
    dose (e/Å² per frame) and which values came from the file's metadata (the rest from the
    config; the dose, unless the file records it, is counted from frame 0)."""
    from stream3d.io.movies import open_movie

    movie = open_movie(path)
    try:
        meta = movie.meta
        frames = len(movie)
        first = np.asarray(movie[0]) if frames else None
    finally:
        movie.close()
    cal = calibrate(meta, config, name=str(path))
    dose, dose_from = meta.dose, "metadata" if meta.dose is not None else None
    if dose is None and first is not None:
        counted = counted_dose(first, cal.pixel_size)
        if math.isfinite(counted):
            dose, dose_from = counted, "counts"
    notes = list(cal.messages)
    if first is not None and not is_auto(config):
        notes += dose_messages(float(config.detector.dose), first, cal.pixel_size)
    shape = list(first.shape) if first is not None else []
    return {
        "file": str(path),
        "format": meta.format,
        "frames": frames,
        "shape": shape,
        "dtype": str(np.dtype(first.dtype)) if first is not None else None,
        "pixel_size": cal.pixel_size,
        "frame_interval": cal.frame_interval,
        "instrument": meta.instrument,
        "detector": meta.detector,
        "dose": dose,
        "energy": cal.energy,
        "from_metadata": {"pixel_size": cal.pixel_size_from == "metadata",
                          "frame_interval": cal.frame_interval_from == "metadata",
                          "dose": dose_from == "metadata",
                          "energy": cal.energy_from == "metadata"},
        "dose_from": dose_from,
        "notes": notes,
        **({"metadata": meta.extra} if meta.extra else {}),
    }


def render(info: dict[str, Any]) -> str:
    """A few aligned lines for a person."""
    src = info["from_metadata"]

    def where(key: str) -> str:
        return "file metadata" if src[key] else "config"

    dose = info["dose"]
    lines = [
        f"file            {info['file']} ({info['format']})",
        f"frames          {info['frames']} x {' x '.join(map(str, info['shape']))} {info['dtype']}",
        f"pixel size      {info['pixel_size']:.5g} Å ({where('pixel_size')})",
        f"frame interval  {info['frame_interval']:.5g} s ({where('frame_interval')})",
        f"voltage         {info['energy'] / 1e3:.4g} kV ({where('energy')})",
        f"instrument      {info['instrument'] or 'not recorded'}",
        f"detector        {info['detector'] or 'not recorded'}",
        "dose            " + (f"{dose:.4g} e/Å² per frame "
                              f"({'file metadata' if src['dose'] else 'counted from frame 0'})"
                              if dose is not None else "unknown"),
    ]
    lines += [f"note            {n}" for n in info["notes"]]
    return "\n".join(lines)
