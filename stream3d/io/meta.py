"""What a movie file says about itself: calibrations converted to stream3d's units.

Lengths go to Å, times to seconds. A calibration in reciprocal units (a diffraction pattern's
1/nm) is not a pixel size and is never taken for one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Length units -> Å per unit (spellings seen in DM, TIA, Velox, NCEM, ImageJ, OME).
_LENGTH = {
    "m": 1e10, "meter": 1e10, "metre": 1e10, "cm": 1e8, "centimeter": 1e8, "mm": 1e7,
    "millimeter": 1e7, "um": 1e4, "µm": 1e4, "μm": 1e4, "micron": 1e4, "micrometer": 1e4,
    "nm": 10.0, "nanometer": 10.0, "a": 1.0, "å": 1.0, "Å": 1.0, "angstrom": 1.0,
    "ångström": 1.0, "\\u00c5": 1.0, "pm": 0.01, "picometer": 0.01,
}
_TIME = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "millisecond": 1e-3,
         "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "microsecond": 1e-6, "ns": 1e-9, "min": 60.0,
         "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def length_in_angstrom(value: Any, units: Any) -> float | None:
    """``value`` ``units`` in Å; None when the units are not a length (e.g. 1/nm) or unknown."""
    if not _positive(value) or not isinstance(units, str):
        return None
    key = units.strip()
    factor = _LENGTH.get(key, _LENGTH.get(key.lower()))
    return float(value) * factor if factor is not None else None


def time_in_seconds(value: Any, units: Any) -> float | None:
    """``value`` ``units`` in seconds; None when the units are not a time."""
    if not _positive(value) or not isinstance(units, str):
        return None
    factor = _TIME.get(units.strip().lower())
    return float(value) * factor if factor is not None else None


def is_reciprocal(units: Any) -> bool:
    """True for reciprocal-space units such as ``1/nm``, ``1 / nm``, ``nm^-1``."""
    return isinstance(units, str) and ("1/" in units.replace(" ", "") or "^-1" in units
                                       or "-1" in units.replace(" ", ""))


def _positive(value: Any) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0


@dataclass
class MovieMeta:
    """A movie's calibrations from its file (None = the file does not say).

    ``pixel_size`` Å, ``frame_interval`` s, ``dose`` e/Å² per frame, ``energy`` eV; ``notes`` say what was
    found but not used (e.g. a reciprocal-space calibration)."""

    format: str = ""
    pixel_size: float | None = None
    frame_interval: float | None = None
    instrument: str | None = None
    detector: str | None = None
    dose: float | None = None
    energy: float | None = None  # eV, the accelerating voltage the file records
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
