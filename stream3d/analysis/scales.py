"""Axis and colour ranges of a report, saved beside it (scales.json) so that another analysis
can draw on the same scales (``stream3d analyze RUN --like OTHER_REPORT``): a run and its
ground truth then share colours and axes and can be compared by eye."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from stream3d.errors import UserError

FILE = "scales.json"


@dataclass(frozen=True)
class Scales:
    """Ranges, (low, high) each: heights nm (height maps, kymograph), thickness nm, volume nm³
    (whole frame), track volume nm³, surface area nm², time s."""

    height_nm: tuple[float, float] = (math.nan, math.nan)
    thickness_nm: tuple[float, float] = (math.nan, math.nan)
    volume_nm3: tuple[float, float] = (math.nan, math.nan)
    track_volume_nm3: tuple[float, float] = (math.nan, math.nan)
    area_nm2: tuple[float, float] = (math.nan, math.nan)
    time_s: tuple[float, float] = (math.nan, math.nan)

    def union(self, other: Scales) -> Scales:
        """Ranges covering both (NaN ends are ignored)."""
        return Scales(**{f.name: _span(getattr(self, f.name), getattr(other, f.name))
                         for f in fields(self)})

    def write(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        data = {k: [None if not math.isfinite(x) else x for x in v] for k, v in asdict(self).items()}
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path


def _span(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    lows = [x for x in (a[0], b[0]) if math.isfinite(x)]
    highs = [x for x in (a[1], b[1]) if math.isfinite(x)]
    return (min(lows) if lows else math.nan, max(highs) if highs else math.nan)


def span_of(values) -> tuple[float, float]:
    """(min, max) of the finite values of an array-like; NaNs when none."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else (math.nan, math.nan)


def read_scales(report: str | Path) -> Scales:
    """The scales of the report in folder ``report`` (or of its scales.json itself)."""
    path = Path(report)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise UserError(f"--like {report}: no {FILE} there (a folder written by stream3d analyze)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Scales)}
        return Scales(**{k: tuple(math.nan if x is None else float(x) for x in v)
                         for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"--like {report}: {path.name} is not a scales file ({exc})") from None


def limits(span: tuple[float, float], pad: float = 0.0) -> tuple[float | None, float | None]:
    """(low, high) for an axis, None where unknown; widened by ``pad`` of the range."""
    lo, hi = span
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (None, None)
    if hi - lo <= 0:
        return (lo - 0.5, hi + 0.5)
    return (lo - pad * (hi - lo), hi + pad * (hi - lo))
