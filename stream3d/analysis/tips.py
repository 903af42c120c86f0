"""Growth fronts of branched objects: skeleton end points (tips), tracked over time, and their
3D velocity; the lateral growth direction that a kymograph should follow.

Voxels of a run are far from cubic (e.g. 40 Å slices, 1 Å pixels), and a skeleton on such a
grid is meaningless, so the occupancy is first resampled to cubes of ``tip_voxel`` Å:
block-averaged laterally, linearly interpolated along the beam. The 0.5 level of that is
skeletonised (scikit-image, Lee's 3D thinning); skeleton voxels with exactly one neighbour are
tips. A tip sits about a branch radius behind the material's end, the same at every frame, so
its velocity is the front's. Tips are linked frame to frame by laptrack (nearest position,
one assignment per frame pair).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from stream3d.analysis.maps import MATERIAL
from stream3d.analysis.metrics import NM

MIN_TIP_VOXEL = 4.0  # Å: finer cubes make skeletons of noise and cost time
MIN_TIP_FRAMES = 3  # a velocity needs a tip seen in this many frames (two points fit noise)


def tip_voxel(sampling: Sequence[float]) -> float:
    """Cube edge (Å) for skeletons: an eighth of a slice, at least MIN_TIP_VOXEL and a pixel."""
    dz, dy, dx = (float(s) for s in sampling)
    return max(MIN_TIP_VOXEL, dz / 8.0, dy, dx)


def resample_cubic(occ: np.ndarray, sampling: Sequence[float], step: float
                   ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Occupancy (z, y, x) on a grid of about ``step`` Å cubes: (array, its sampling Å).

    Slice 0 stays on top, the new grid spans the same cell; outside the cell is no material.
    """
    nz, ny, nx = occ.shape
    dz, dy, dx = (float(s) for s in sampling)
    f = max(1, int(round(step / max(dy, dx))))
    py, px = -ny % f, -nx % f
    lat = np.pad(np.asarray(occ, dtype=np.float64), ((0, 0), (0, py), (0, px)))
    lat = lat.reshape(nz, lat.shape[1] // f, f, lat.shape[2] // f, f).mean(axis=(2, 4))
    mz = max(1, int(round(nz * dz / step)))
    sz = nz * dz / mz
    # New slice j's centre lies (j + 0.5) sz below the entrance: old index (j + 0.5) sz / dz - 0.5.
    iz = (np.arange(mz) + 0.5) * sz / dz - 0.5
    lo = np.floor(iz).astype(int)
    w = iz - lo
    padded = np.pad(lat, ((1, 1), (0, 0), (0, 0)))  # zero above and below the cell
    out = (1 - w)[:, None, None] * padded[np.clip(lo + 1, 0, nz + 1)] \
        + w[:, None, None] * padded[np.clip(lo + 2, 0, nz + 1)]
    return out, (sz, dy * f, dx * f)


def skeleton_tips(occ: np.ndarray, sampling: Sequence[float], *, step: float | None = None,
                  min_volume: float = 0.0) -> np.ndarray:
    """Tip positions (n, 3) as (height above the exit plane, y, x) Å of one occupancy volume.

    ``min_volume`` (Å³): material parts smaller than this carry no tips.
    """
    from skimage.morphology import skeletonize

    step = tip_voxel(sampling) if step is None else float(step)
    cube, (sz, sy, sx) = resample_cubic(occ, sampling, step)
    solid = cube > MATERIAL
    if min_volume > 0 and solid.any():
        labels, n = ndimage.label(solid, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(labels.ravel())[1:] * sz * sy * sx
        solid = np.isin(labels, np.flatnonzero(sizes >= min_volume) + 1)
    if not solid.any():
        return np.zeros((0, 3))
    skeleton = skeletonize(solid).astype(bool)
    neighbours = ndimage.convolve(skeleton.astype(np.int16), np.ones((3, 3, 3), np.int16),
                                  mode="constant") - 1
    k, j, i = np.nonzero(skeleton & (neighbours == 1))
    nz = cube.shape[0]
    return np.stack([(nz - k - 0.5) * sz, (j + 0.5) * sy, (i + 0.5) * sx], axis=1)


@dataclass(frozen=True)
class TipRow:
    """One tip at one frame (a row of tips.csv); positions nm, height above the exit plane."""

    tip: int
    frame: int
    t: float
    z_nm: float
    y_nm: float
    x_nm: float


@dataclass(frozen=True)
class TipVelocity:
    """A tip's motion over its frames: fitted 3D velocity (Å per frame; nm/s) and the median
    distance it moved per frame (Å), which follows a curved branch that a straight fit cuts."""

    tip: int
    first_frame: int
    last_frame: int
    frames: int
    velocity_A_per_frame: tuple[float, float, float]  # (z, y, x)
    speed_A_per_frame: float  # |fitted velocity|
    step_A_per_frame: float  # median per-frame displacement
    speed_nm_s: float  # |fitted velocity| in nm/s (NaN if frame times are unknown)


def link_tips(frames: Sequence[int], tips: Sequence[np.ndarray], max_step: float) -> list[list[int]]:
    """Tip tracks: for each track, the (index into the flattened tips) in frame order.

    ``tips[i]`` are the (n_i, 3) positions (Å) at store frame ``frames[i]``; a tip links to the
    nearest one of the next frame within ``max_step`` Å, one-to-one.
    """
    import pandas as pd
    from laptrack import LapTrack

    rows = [(i, *p) for i, pts in enumerate(tips) for p in np.asarray(pts)]
    if not rows:
        return []
    df = pd.DataFrame(rows, columns=["frame", "z", "y", "x"])
    tracker = LapTrack(cutoff=max_step**2, splitting_cutoff=False, merging_cutoff=False,
                       gap_closing_max_frame_count=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        track_df, _, _ = tracker.predict_dataframe(df, coordinate_cols=["z", "y", "x"],
                                                   frame_col="frame", only_coordinate_cols=False)
    out: dict[int, list[int]] = {}
    for idx, tid in zip(track_df.index, track_df["track_id"]):
        out.setdefault(int(tid), []).append(int(idx))
    tracks = [sorted(v, key=lambda r: df["frame"][r]) for v in out.values()]
    return sorted(tracks, key=lambda v: (df["frame"][v[0]], v[0]))


def tip_tracks(frames: Sequence[int], times: Sequence[float], tips: Sequence[np.ndarray],
               max_step: float) -> tuple[list[TipRow], list[TipVelocity]]:
    """Rows of tips.csv and each tip's velocity (tips seen in at least MIN_TIP_FRAMES frames)."""
    flat = [(frames[i], times[i], p) for i, pts in enumerate(tips) for p in np.asarray(pts)]
    rows, velocities = [], []
    for tid, members in enumerate(link_tips(frames, tips, max_step), start=1):
        f = np.array([flat[m][0] for m in members], dtype=float)
        t = np.array([flat[m][1] for m in members], dtype=float)
        p = np.array([flat[m][2] for m in members])
        rows += [TipRow(tid, int(fi), float(ti), *(float(c) / NM for c in pi))
                 for fi, ti, pi in zip(f, t, p)]
        if len(members) < MIN_TIP_FRAMES:
            continue
        slope = np.polyfit(f, p, 1)[0]  # (3,) Å per frame
        steps = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(f)
        dt = np.polyfit(f, t, 1)[0] if np.ptp(t) > 0 else math.nan  # s per frame
        speed = float(np.linalg.norm(slope))
        velocities.append(TipVelocity(
            tid, int(f[0]), int(f[-1]), len(members), tuple(float(v) for v in slope), speed,
            float(np.median(steps)), speed / NM / dt if dt and math.isfinite(dt) else math.nan))
    return rows, velocities


def growth_line(velocities: Sequence[TipVelocity], rows: Sequence[TipRow],
                field: tuple[float, float]) -> tuple[float, float, float, float] | None:
    """Kymograph line (y0, x0, y1, x1) Å across the field along the lateral path of the tip
    that travelled furthest sideways; None without a tip that moved."""
    best, reach = None, 0.0
    for v in velocities:
        pts = np.array([(r.y_nm, r.x_nm) for r in rows if r.tip == v.tip]) * NM
        d = float(np.linalg.norm(pts[-1] - pts[0]))
        if d > reach:
            best, reach = pts, d
    if best is None or reach <= 0:
        return None
    a, b = best[0], best[-1]
    u = (b - a) / reach
    # Extend the segment both ways to the field's border: t where a + t u leaves [0, F].
    lo, hi = -np.inf, np.inf
    for axis, size in enumerate(field):
        if abs(u[axis]) > 1e-12:
            t1, t2 = (0 - a[axis]) / u[axis], (size - a[axis]) / u[axis]
            lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
    p0, p1 = a + lo * u, a + hi * u
    return (float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]))


def write_tips_csv(rows: Sequence[TipRow], velocities: Sequence[TipVelocity],
                   path: str | Path) -> Path:
    """tips.csv: tip, frame, t, z/y/x (nm) and, on every row of the tip, its fitted speed
    (Å per frame) and median step (Å per frame)."""
    from stream3d.analysis.tracking import sig

    by_tip = {v.tip: v for v in velocities}
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tip", "frame", "t", "z_nm", "y_nm", "x_nm", "speed_A_per_frame",
                    "step_A_per_frame", "speed_nm_s"])
        for r in rows:
            v = by_tip.get(r.tip)
            w.writerow([r.tip, r.frame, sig(r.t, 6), sig(r.z_nm, 4), sig(r.y_nm, 4),
                        sig(r.x_nm, 4), sig(v.speed_A_per_frame) if v else "",
                        sig(v.step_A_per_frame) if v else "", sig(v.speed_nm_s) if v else ""])
    return path
