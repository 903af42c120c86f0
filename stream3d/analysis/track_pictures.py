"""Pictures of tracked objects and growth fronts: volume per track over time, tracks and tips
in 3D. Matplotlib Agg canvas, one PNG each; lengths nm, times s, heights above the exit plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stream3d.analysis.tips import TipRow, TipVelocity
from stream3d.analysis.tracking import Track, TrackRow

DPI = 110
_MARKERS = {"birth": ("o", "birth"), "split": ("v", "split"), "merge": ("s", "merge"),
            "loss": ("x", "loss")}


def _colour(k: int):
    return colormaps["tab10"](k % 10)


def plot_track_volumes(rows: Sequence[TrackRow], tracks: Sequence[Track], path: Path, *,
                       time_label: str = "time (s)", volume_max: float | None = None) -> Path:
    """Volume (nm³) of every track over time, one colour per track; events marked; family
    links (merge / split) drawn dotted from a parent's last point to a child's first."""
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    by_track: dict[int, list[TrackRow]] = {}
    for r in rows:
        by_track.setdefault(r.track, []).append(r)
    seen = set()
    for tr in tracks:
        pts = by_track.get(tr.id, [])
        if not pts:
            continue
        t = [r.t for r in pts]
        v = [r.volume_nm3 for r in pts]
        ax.plot(t, v, "-", color=_colour(tr.id), lw=1.6, label=f"track {tr.id}")
        for r in pts:
            for ev in filter(None, r.event.split(";")):
                marker, name = _MARKERS[ev]
                ax.plot(r.t, r.volume_nm3, marker, color=_colour(tr.id), ms=8, mfc="none",
                        mew=1.6, label=None if name in seen else name)
                seen.add(name)
        for p in tr.parents:
            last = by_track[p][-1]
            ax.plot([last.t, pts[0].t], [last.volume_nm3, pts[0].volume_nm3], ":",
                    color="0.4", lw=1)
    if not rows:
        ax.text(0.5, 0.5, "no objects", transform=ax.transAxes, ha="center", color="0.4")
    ax.set(xlabel=time_label, ylabel="volume (nm³)", title="Volume of each tracked object")
    ax.set_ylim(0, volume_max if volume_max else None)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[:24], labels[:24], fontsize=8, ncol=2, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=DPI)
    return path


def plot_tracks_3d(rows: Sequence[TrackRow], tip_rows: Sequence[TipRow],
                   cell_nm: tuple[float, float, float], path: Path, *,
                   shown_tips: set[int] | None = None) -> Path:
    """Object centroids (lines per track, dot size ~ volume) and tip paths (thin black; only
    tips in ``shown_tips`` when given) in the cell (depth, field y, field x) nm."""
    depth, fy, fx = cell_nm
    fig = Figure(figsize=(8.5, 7), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    by_track: dict[int, list[TrackRow]] = {}
    for r in rows:
        by_track.setdefault(r.track, []).append(r)
    vmax = max((r.volume_nm3 for r in rows), default=1.0) or 1.0
    for tid, pts in by_track.items():
        x, y, z = (np.array([getattr(r, f"centroid_{a}_nm") for r in pts]) for a in "xyz")
        ax.plot(x, y, z, "-", color=_colour(tid), lw=2)
        ax.scatter(x, y, z, s=8 + 120 * np.array([r.volume_nm3 for r in pts]) / vmax,
                   color=_colour(tid), depthshade=False)
        ax.text(x[-1], y[-1], z[-1], f" {tid}", color=_colour(tid), fontsize=9)
    by_tip: dict[int, list[TipRow]] = {}
    for r in tip_rows:
        if shown_tips is None or r.tip in shown_tips:
            by_tip.setdefault(r.tip, []).append(r)
    for k, (tid, pts) in enumerate(by_tip.items()):
        x, y, z = (np.array([getattr(r, f"{a}_nm") for r in pts]) for a in "xyz")
        ax.plot(x, y, z, "-", color="k", lw=0.8, label="tip paths" if k == 0 else None)
        ax.scatter(x[-1:], y[-1:], z[-1:], marker="^", color="k", s=14, depthshade=False)
    ax.set(xlim=(0, fx), ylim=(fy, 0), zlim=(0, depth))
    shown = min(depth, max(fx, fy))  # deep cells: the height axis squeezed to the field width
    ax.set_box_aspect((fx, fy, shown))
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_zlabel("height (nm)")
    ax.tick_params(labelsize=7)
    ax.view_init(elev=22, azim=-58)
    if by_tip:
        ax.legend(loc="upper left", fontsize=8)
    squeeze = shown / depth
    ax.set_title("Tracks: object centroids over time (dot size ~ volume), numbered at their "
                 "last frame" + (f"\nheight axis drawn {squeeze:.2g} x its true scale"
                                 if squeeze < 0.99 else ""), fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def plot_tip_speeds(velocities: Sequence[TipVelocity], path: Path, *,
                    expected: float | None = None) -> Path:
    """Each tip's fitted speed and median step (Å per frame) as bars; ``expected`` (Å per
    frame, e.g. the simulated growth) as a line."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ids = np.arange(len(velocities))
    ax.bar(ids - 0.2, [v.speed_A_per_frame for v in velocities], 0.4, label="fitted speed")
    ax.bar(ids + 0.2, [v.step_A_per_frame for v in velocities], 0.4, label="median step")
    if expected is not None:
        ax.axhline(expected, color="k", ls="--", lw=1,
                   label=f"simulated growth {expected:g} Å/frame")
    ax.set_xticks(ids, [f"{v.tip}\n{v.first_frame}-{v.last_frame}" for v in velocities],
                  fontsize=8)
    ax.set(xlabel="tip (frames seen)", ylabel="Å per frame", title="Growth-front (tip) speed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=DPI)
    return path
