"""Errors of a run store against the ground truth of the simulated movie it reconstructed.

For every frame of the run whose detector frame number is in the truth store: the depth
(height) error and 3D IoU of the pop-out volume and of the refined volume (the measures of
stream3d.scoring.volume). Frames not reconstructed keep their row with NaN errors.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from stream3d.analysis.run import read_run, run_config
from stream3d.errors import UserError
from stream3d.scoring.volume import depth_error, iou
from stream3d.store import Status


@dataclass(frozen=True)
class FrameErrors:
    """One run frame against its truth: depth errors (Å) and IoUs, NaN when not available."""

    t: int
    frame_id: int
    status: str
    popout_depth: float
    popout_iou: float
    refined_depth: float
    refined_iou: float


def compare_to_truth(run_path: str | Path, truth_path: str | Path) -> list[FrameErrors]:
    """Per-frame errors of the run at ``run_path`` against ``truth.zarr`` at ``truth_path``.

    Frames are matched by detector frame number (a replayed or emulated movie numbers its
    frames from 0, as the truth does). Material is V >= sample.potential / 2 of the run's config.
    """
    run = read_run(run_path)
    truth = _open_truth(Path(truth_path))
    cfg = run_config(run)
    potential, dz = float(cfg.sample.potential), float(cfg.sample.slice_thickness)
    group = zarr.open_group(str(run_path), mode="r")
    ids = np.asarray(group["frame_id"][:])
    statuses = np.asarray(group["status"][:])
    truth_ids = {int(i): k for k, i in enumerate(np.asarray(truth["frame_id"][:])) if i >= 0}
    occupancy = truth["occupancy"]
    seen = run_view(group)
    nz, ny, nx = (int(n) for n in occupancy.shape[1:])
    have: tuple[int, ...] | None = (nz, ny, nx)
    if seen is not None:  # the run's region of interest, binned: it must lie in the truth
        (y0, x0, y1, x1), b = seen
        have = (nz, (y1 - y0) // b, (x1 - x0) // b) if y1 <= ny and x1 <= nx else None
    if have != tuple(group["volume"].shape[1:]):
        view = "" if seen is None else f" (the run saw roi {list(seen[0])}, bin {seen[1]})"
        raise UserError(f"truth {truth_path} has (z, y, x) {(nz, ny, nx)}, the run "
                        f"{tuple(group['volume'].shape[1:])}{view}: not the movie of this run")
    rows = []
    for t, (fid, code) in enumerate(zip(ids.tolist(), statuses.tolist())):
        if fid not in truth_ids:
            continue
        occ = as_run_sees(np.asarray(occupancy[truth_ids[fid]]), seen)
        errs = []
        for name in ("popout", "volume"):
            v = np.asarray(group[name][t])
            if np.isnan(v).all():
                errs += [math.nan, math.nan]
            else:
                errs += [depth_error(v, occ, potential=potential, dz=dz),
                         iou(v, occ, potential=potential)]
        rows.append(FrameErrors(t, fid, Status(code).name.lower(), *errs))
    if not rows:
        raise UserError(f"no frame of {run_path} has a frame number found in {truth_path}")
    return rows


def write_csv(rows: list[FrameErrors], path: str | Path) -> Path:
    """One row per frame: t, frame_id, status, pop-out / refined depth error (Å) and IoU."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "frame_id", "status", "popout_depth_error_A", "popout_iou",
                    "refined_depth_error_A", "refined_iou"])
        for r in rows:
            w.writerow([r.t, r.frame_id, r.status, *(("" if math.isnan(x) else f"{x:.4g}")
                        for x in (r.popout_depth, r.popout_iou, r.refined_depth, r.refined_iou))])
    return path


def summary_lines(rows: list[FrameErrors]) -> list[str]:
    """A small table for the terminal, then the means over frames that have both volumes."""
    lines = [f"{'t':>4} {'frame':>6} {'status':<8} {'pop-out height error (Å)':>25} "
             f"{'IoU':>6} {'refined height error (Å)':>25} {'IoU':>6}"]
    for r in rows:
        lines.append(f"{r.t:>4} {r.frame_id:>6} {r.status:<8} {r.popout_depth:>25.1f} "
                     f"{r.popout_iou:>6.3f} {r.refined_depth:>25.1f} {r.refined_iou:>6.3f}")
    both = [r for r in rows if not (math.isnan(r.popout_depth) or math.isnan(r.refined_depth))]
    if both:
        mean = lambda xs: float(np.mean(xs))  # noqa: E731
        lines.append(f"mean over {len(both)} frames: mean column height error pop-out "
                     f"{mean([r.popout_depth for r in both]):.1f} Å, "
                     f"IoU {mean([r.popout_iou for r in both]):.3f}; refined "
                     f"{mean([r.refined_depth for r in both]):.1f} Å, "
                     f"IoU {mean([r.refined_iou for r in both]):.3f}")
    return lines


def run_view(group: zarr.Group) -> tuple[tuple[int, int, int, int], int] | None:
    """(roi, bin) of a run that reconstructed a region of interest or binned frames
    (``stream3d.view``), None when its volumes cover the whole frame."""
    view = (group.attrs.get("stream3d") or {}).get("view") or {}
    try:
        roi, b = tuple(int(v) for v in view["roi"]), int(view["bin"])
    except (KeyError, TypeError, ValueError):
        return None
    return (roi, b) if len(roi) == 4 and b >= 1 else None


def as_run_sees(occupancy: np.ndarray, seen: tuple[tuple[int, ...], int] | None) -> np.ndarray:
    """A true occupancy (z, y, x) on the run's grid: its ROI, each bin x bin block's mean
    material fraction (a binned pixel holds the mean of the raw pixels it sums)."""
    if seen is None:
        return occupancy
    from stream3d.view import crop_bin

    return crop_bin(occupancy, seen[0], seen[1], "mean")


def _open_truth(path: Path) -> zarr.Group:
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        raise UserError(f"{path} is not a ground-truth store (from stream3d simulate)") from None
    if "occupancy" not in group or "frame_id" not in group:
        raise UserError(f"{path} has no occupancy / frame_id arrays: not a truth.zarr from "
                        f"stream3d simulate")
    return group


PICTURE_FRAMES = 4  # frames shown side by side


def write_comparison(run_path: str | Path, truth_path: str | Path, out: str | Path,
                     rows: list[FrameErrors], *, frames: int = PICTURE_FRAMES) -> dict[str, Path]:
    """errors.csv and the side-by-side pictures (truth, pop-out, refined) of up to ``frames``
    frames spread over the run, in folder ``out``; returns the paths by name."""
    from stream3d.analysis import compare_pictures as cp
    from stream3d.analysis.frames import spread
    from stream3d.scoring.volume import occupancy_of

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = read_run(run_path)
    cfg = run_config(run)
    potential = float(cfg.sample.potential)
    truth = _open_truth(Path(truth_path))
    group = zarr.open_group(str(run_path), mode="r")
    truth_index = {int(i): k for k, i in enumerate(np.asarray(truth["frame_id"][:])) if i >= 0}
    shown = [rows[k] for k in spread(np.arange(len(rows)), frames)]
    volumes = []
    seen = run_view(group)
    for r in shown:
        occ = as_run_sees(np.asarray(truth["occupancy"][truth_index[r.frame_id]]), seen)
        occ = occ.astype(np.float64)
        mine = []
        for name in ("popout", "volume"):
            v = np.asarray(group[name][r.t]) if name in group else None
            mine.append(None if v is None or np.isnan(v).all() else occupancy_of(v, potential))
        title = f"frame {r.frame_id}, t = {run.time[r.t]:.3g} s"
        volumes.append(cp.FrameVolumes(r.t, title, (occ, *mine)))
    return {
        "errors.csv": write_csv(rows, out / "errors.csv"),
        "compare_xz": cp.plot_sections(volumes, run.sampling, "x", out / "compare_xz.png"),
        "compare_yz": cp.plot_sections(volumes, run.sampling, "y", out / "compare_yz.png"),
        "compare_heights": cp.plot_height_maps(volumes, run.sampling, out / "compare_heights.png"),
    }
