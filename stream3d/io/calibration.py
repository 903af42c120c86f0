"""Which pixel size, frame interval, voltage and dose a replay uses, and saying so.

Pixel size (Å), frame interval (s) and accelerating voltage (eV) come from the movie file's
metadata when it records them, from the config (sample.pixel_size, stream.frame_interval,
microscope.energy) otherwise; a disagreement of more than 5% (voltage: 1%) between the two is
reported once. The dose (e/Å² per frame) is checked against the frames' counts, and
``detector.dose = "auto"`` resolved, in :mod:`stream3d.io.dose`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from stream3d.config import Config
from stream3d.io.meta import MovieMeta

log = logging.getLogger("stream3d.io")

DISAGREE = 0.05  # relative difference of file and config calibrations that is reported
ENERGY_DISAGREE = 0.01  # relative difference of file and config voltage that is reported


@dataclass(frozen=True)
class Calibration:
    """The values a replay uses and where each came from ("metadata" or "config")."""

    pixel_size: float  # Å
    pixel_size_from: str
    frame_interval: float  # s
    frame_interval_from: str
    messages: tuple[str, ...] = ()
    energy: float | None = None  # eV; None: the config's microscope.energy
    energy_from: str = "config"


def calibrate(meta: MovieMeta, config: Config, name: str = "movie") -> Calibration:
    """The file's calibrations where it has them, the config's otherwise; the messages say
    which, and warn about >5% disagreements (the caller logs them)."""
    messages = list(f"{name}: {note}" for note in meta.notes)
    size, size_from = config.sample.pixel_size, "config"
    if meta.pixel_size is not None:
        if _differs(meta.pixel_size, size):
            messages.append(f"{name} records {meta.pixel_size:.4g} Å/pixel, the config says "
                            f"sample.pixel_size = {size:.4g} Å: using the file's")
        size, size_from = meta.pixel_size, "metadata"
    interval, interval_from = config.stream.frame_interval, "config"
    if meta.frame_interval is not None:
        if _differs(meta.frame_interval, interval):
            messages.append(f"{name} records {meta.frame_interval:.4g} s between frames, the "
                            f"config says stream.frame_interval = {interval:.4g} s: using "
                            "the file's")
        interval, interval_from = meta.frame_interval, "metadata"
    energy, energy_from = config.microscope.energy, "config"
    if meta.energy is not None:
        if abs(meta.energy - energy) > ENERGY_DISAGREE * energy:
            messages.append(f"{name} was recorded at {meta.energy / 1e3:.4g} kV, the config "
                            f"says microscope.energy = {energy:.6g} eV ({energy / 1e3:.4g} kV): "
                            "using the file's (the wavelength, and so every height, "
                            "depends on it)")
        energy, energy_from = meta.energy, "metadata"
    return Calibration(size, size_from, interval, interval_from, tuple(messages), energy,
                       energy_from)


def apply(config: Config, cal: Calibration) -> Config:
    """``config`` with the calibration's pixel size and frame interval."""
    energy = cal.energy if cal.energy is not None else config.microscope.energy
    return dataclasses.replace(
        config, sample=dataclasses.replace(config.sample, pixel_size=cal.pixel_size),
        stream=dataclasses.replace(config.stream, frame_interval=cal.frame_interval),
        microscope=dataclasses.replace(config.microscope, energy=energy))


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > DISAGREE * max(abs(a), abs(b))
