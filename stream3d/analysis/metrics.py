"""Per-frame metrics of one volume in physical units (nm, nm², nm³), and the table over time.

Material is where the volume exceeds half the material level (``sample.potential`` volts for a
potential, 1 for an occupancy): the threshold the refinement uses for its IoU. Its amount is
the integral of V / level over the material and a one-voxel rim (partial-volume voxels at the
boundary count by their fraction, zero-mean texture and noise average out instead of being
clipped away); its surface is the 0.5 level set of the occupancy clip(V / level, 0, 1) by
marching cubes, after a lateral blur to the data's resolution; face heights interpolate that
occupancy between slice centres.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy import ndimage

from stream3d.analysis.maps import MATERIAL, smooth_lateral, top_bottom
from stream3d.analysis.surface import isosurface, mesh_area
from stream3d.specimen.geometry import slice_centres

NM = 10.0  # Å per nm
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # a Gaussian's FWHM / sigma
ANTIALIAS_PX = 0.7  # px: lateral blur before the iso-surface, so pixel staircases are not area
_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # faces, edges and corners touch


def material_ratio(volume: np.ndarray, level: float) -> np.ndarray:
    """volume / level as float64 (real part); NaN (not reconstructed) counts as no material."""
    if not level > 0:
        raise ValueError(f"material level must be > 0, got {level}")
    ratio = np.asarray(volume)
    if np.iscomplexobj(ratio):
        ratio = ratio.real
    return np.nan_to_num(ratio.astype(np.float64) / level, nan=0.0)


def occupancy(volume: np.ndarray, level: float) -> np.ndarray:
    """clip(volume / level, 0, 1) as float64; NaN (not reconstructed) counts as no material."""
    return np.clip(material_ratio(volume, level), 0.0, 1.0)


@dataclass(frozen=True)
class FrameMetrics:
    """Metrics of one reconstructed frame; lengths in nm, heights above the exit plane.

    Positions are voxel centres: x = (k + 0.5) pixel_size, as in :mod:`stream3d.specimen`.
    Where there is no material the heights and centre of mass are NaN (volume and area 0).
    """

    volume_nm3: float
    area_nm2: float
    height_min_nm: float
    height_max_nm: float
    depth_extent_nm: float
    com_x_nm: float
    com_y_nm: float
    com_z_nm: float
    parts: int


def surface_area(occ: np.ndarray, sampling: Sequence[float], *,
                 antialias_px: float = ANTIALIAS_PX) -> float:
    """Area (Å²) of the material surface (0.5 level of an occupancy (z, y, x))."""
    field = smooth_lateral(occ, antialias_px)
    return mesh_area(isosurface(field, MATERIAL, sampling))


def count_parts(material: np.ndarray, voxel_volume: float, min_volume: float) -> int:
    """Connected parts of a boolean mask (26-neighbourhood) of at least ``min_volume`` (Å³)."""
    labels, n = ndimage.label(material, structure=_NEIGHBOURS)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:] * voxel_volume
    return int((sizes >= min_volume).sum())


def frame_metrics(volume: np.ndarray, *, sampling: Sequence[float], level: float,
                  min_part_volume: float = 1.0, resolution: float = 0.0) -> FrameMetrics:
    """Metrics of one (z, y, x) volume sampled at ``sampling`` = (dz, dy, dx) Å.

    ``level``: the value of full material (V, or 1 for an occupancy); ``min_part_volume``:
    the smallest connected part counted (nm³), so that single noisy voxels are not parts;
    ``resolution``: Å FWHM at which the surface is measured (0: the grid, anti-aliased).
    """
    dz, dy, dx = (float(s) for s in sampling)
    ratio = material_ratio(volume, level)
    occ = np.clip(ratio, 0.0, 1.0)
    material = occ > MATERIAL
    voxel = dz * dy * dx
    if not material.any():
        nan = math.nan
        return FrameMetrics(0.0, 0.0, nan, nan, nan, nan, nan, nan, 0)
    # Only the material and its rim count, so noise in the solvent far away adds nothing.
    region = ndimage.binary_dilation(material, structure=_NEIGHBOURS)
    amount = float(ratio[region].sum())
    weight = np.clip(ratio, 0.0, None) * region  # centre of mass: no negative weights
    mass = weight.sum()
    nz, ny, nx = occ.shape
    top, bottom = top_bottom(occ, dz)
    height_max, height_min = float(np.nanmax(top)), float(np.nanmin(bottom))
    com_z = float(slice_centres(nz, dz) @ weight.sum(axis=(1, 2)) / mass)
    com_y = float(((np.arange(ny) + 0.5) * dy) @ weight.sum(axis=(0, 2)) / mass)
    com_x = float(((np.arange(nx) + 0.5) * dx) @ weight.sum(axis=(0, 1)) / mass)
    return FrameMetrics(
        volume_nm3=amount * voxel / NM**3,
        area_nm2=surface_area(occ, (dz, dy, dx),
                              antialias_px=max(ANTIALIAS_PX, resolution / FWHM_PER_SIGMA
                                               / min(dy, dx))) / NM**2,
        height_min_nm=height_min / NM,
        height_max_nm=height_max / NM,
        depth_extent_nm=(height_max - height_min) / NM,
        com_x_nm=com_x / NM,
        com_y_nm=com_y / NM,
        com_z_nm=com_z / NM,
        parts=count_parts(material, voxel, min_part_volume * NM**3),
    )


METRIC_NAMES = tuple(f.name for f in fields(FrameMetrics))


@dataclass(frozen=True)
class MetricsTable:
    """One row per frame of the store. Metrics are NaN where a frame was not reconstructed."""

    frame: np.ndarray  # (t,) index along the store's t axis
    frame_id: np.ndarray  # (t,) detector frame number
    time_s: np.ndarray  # (t,) s since the first frame
    status: tuple[str, ...]  # (t,) pending | refined | skipped | failed | complete
    loss: np.ndarray  # (t,) final data loss, NaN where absent
    analysed: np.ndarray  # (t,) bool: metrics were computed for this frame
    values: dict[str, np.ndarray]  # metric name -> (t,) float, NaN where not analysed
    growth_rate_nm3_per_s: np.ndarray  # (t,) d volume / d t since the previous analysed frame

    def column(self, name: str) -> np.ndarray:
        """A metric (or growth_rate_nm3_per_s) as a (t,) float array."""
        if name == "growth_rate_nm3_per_s":
            return self.growth_rate_nm3_per_s
        return self.values[name]

    @property
    def columns(self) -> tuple[str, ...]:
        """CSV header, in order."""
        return ("frame", "frame_id", "time_s", "status", *METRIC_NAMES,
                "growth_rate_nm3_per_s", "loss")

    def rows(self) -> list[list[str]]:
        """The table as text cells: empty where there is no number (never a made-up zero)."""
        out = []
        for t in range(len(self.frame)):
            cells = [str(int(self.frame[t])), str(int(self.frame_id[t])), _cell(self.time_s[t]),
                     self.status[t]]
            cells += [_cell(self.values[name][t], integer=name == "parts") for name in METRIC_NAMES]
            cells += [_cell(self.growth_rate_nm3_per_s[t]), _cell(self.loss[t])]
            out.append(cells)
        return out

    def write_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (header + one row per frame)."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            writer.writerows(self.rows())
        return path


def _cell(value: float, *, integer: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return ""
    return str(int(value)) if integer else f"{float(value):.4g}"


RATE_HALF_WINDOW = 2  # growth rates fit a line through a frame and this many each side


def local_slope(t: np.ndarray, values: np.ndarray, half: int = RATE_HALF_WINDOW) -> np.ndarray:
    """d values / d t at every point: the slope of a least-squares line through the point and
    up to ``half`` neighbours either side (fewer at the ends). One noisy volume then moves a
    rate by a fifth of its error instead of flipping its sign; a quadratic is exact at
    symmetric points. NaN for fewer than two points."""
    t, values = np.asarray(t, float), np.asarray(values, float)
    out = np.full(t.size, np.nan)
    if t.size < 2:
        return out
    for i in range(t.size):
        lo, hi = max(0, i - half), min(t.size, i + half + 1)
        tt, vv = t[lo:hi], values[lo:hi]
        tc = tt - tt.mean()
        denom = float(tc @ tc)
        if denom > 0:
            out[i] = float(tc @ (vv - vv.mean())) / denom
    # Equal volumes differ by rounding only: call that 0, not 1e-12.
    tiny = 1e-9 * np.nanmax(np.abs(values)) / max(float(np.min(np.diff(t))), 1e-300)
    return np.where(np.abs(out) < tiny, 0.0, out)


def growth_rate(volume_nm3: np.ndarray, time_s: np.ndarray, analysed: np.ndarray) -> np.ndarray:
    """Growth rate (nm³/s) of every analysed frame: :func:`local_slope` over the analysed
    frames (frames without numbers are skipped, not counted as zero). NaN elsewhere, and
    everywhere when times do not increase."""
    rate = np.full(len(volume_nm3), np.nan)
    index = np.flatnonzero(analysed)
    t = np.asarray(time_s, float)[index]
    if index.size >= 2 and np.all(np.diff(t) > 0):
        rate[index] = local_slope(t, np.asarray(volume_nm3, float)[index])
    return rate


def build_table(*, frame_id: np.ndarray, time_s: np.ndarray, status: Sequence[str],
                loss: np.ndarray, per_frame: dict[int, FrameMetrics]) -> MetricsTable:
    """Assemble the table from the metrics of the analysed frames (index -> metrics)."""
    n = len(frame_id)
    analysed = np.zeros(n, dtype=bool)
    values = {name: np.full(n, np.nan) for name in METRIC_NAMES}
    for t, m in per_frame.items():
        analysed[t] = True
        for name in METRIC_NAMES:
            values[name][t] = getattr(m, name)
    return MetricsTable(
        frame=np.arange(n), frame_id=np.asarray(frame_id), time_s=np.asarray(time_s, float),
        status=tuple(status), loss=np.asarray(loss, float), analysed=analysed, values=values,
        growth_rate_nm3_per_s=growth_rate(values["volume_nm3"], np.asarray(time_s, float),
                                          analysed),
    )
