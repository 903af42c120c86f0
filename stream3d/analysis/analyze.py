"""``stream3d analyze``: metrics of every reconstructed frame, pictures, CSV and index.html.

Frames are read one at a time (the store is chunked per frame), so runs longer than memory
are fine. Frames not reconstructed (pending, skipped, failed) become rows without numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from stream3d.analysis import pictures, render, report
from stream3d.analysis.maps import MATERIAL, line_samples, profile, thickness, top_bottom
from stream3d.analysis.metrics import (
    NM, FrameMetrics, MetricsTable, build_table, frame_metrics, occupancy,
)
from stream3d.analysis.run import Run, material_level, read_run, run_config, status_summary
from stream3d.errors import UserError

MONTAGE_FRAMES = 12
RENDER_FRAMES = 4


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` wrote: the table and the paths of every file in ``out``."""

    out: Path
    table: MetricsTable
    csv: Path
    pictures: dict[str, Path]
    index: Path


def spread(indices: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` of ``indices`` evenly spread from the first to the last."""
    if len(indices) <= count:
        return [int(i) for i in indices]
    picks = np.round(np.linspace(0, len(indices) - 1, count)).astype(int)
    return [int(indices[p]) for p in picks]


def _choose_frame(run: Run, frame: int | None, done: np.ndarray) -> int:
    if frame is None:  # the last done frame that holds data (a torn one may not)
        return next((int(t) for t in done[::-1] if np.isfinite(run.frame(int(t))).any()),
                    int(done[-1]))
    n = run.shape[0]
    t = frame + n if frame < 0 else frame
    if not 0 <= t < n:
        raise UserError(f"--frame {frame} is outside the run (frames 0 to {n - 1})")
    if t not in set(done.tolist()):
        raise UserError(f"--frame {frame} is {run.status_names[t]}, not reconstructed "
                        f"(reconstructed: {_ranges(done)})")
    return t


def _ranges(indices: np.ndarray) -> str:
    """'0-4, 6, 8-9' for sorted indices."""
    parts, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(f"{start}" if start == i else f"{start}-{i}")
            start = None
    return ", ".join(parts)


def _default_line(run: Run, occ: np.ndarray) -> tuple[float, float, float, float]:
    """Along x, across the field, through the row crossing the most material columns (Å)."""
    _, _, ny, nx = run.shape
    _, dy, dx = run.sampling
    columns = (occ > MATERIAL).any(axis=0).sum(axis=1)
    row = int(np.argmax(columns)) if columns.any() else ny // 2
    y = (row + 0.5) * dy
    return (y, 0.0, y, nx * dx)


def _slice_centre(occ: np.ndarray) -> tuple[int, int, int]:
    """(iz, iy, ix) of the slice, row and column holding the most material."""
    material = occ > MATERIAL
    if not material.any():
        return tuple(n // 2 for n in occ.shape)
    return tuple(int(np.argmax(material.sum(axis=axes))) for axes in ((1, 2), (0, 2), (0, 1)))


def _frame_title(run: Run, t: int) -> str:
    return f"t = {run.time[t]:.3g} s (frame {t})"


@dataclass
class _Frames:
    """What one pass over the frames collects: metrics, and the data behind the pictures."""

    metrics: dict[int, FrameMetrics]
    status: list[str]
    kymo_height: np.ndarray  # (t, n) Å along the line, NaN where no material / no volume
    kymo_thick: np.ndarray  # (t, n) Å
    maps: dict[int, np.ndarray] = field(default_factory=dict)  # top-height maps (Å) to show
    meshes: dict[int, np.ndarray] = field(default_factory=dict)  # surfaces to render


def measure_frames(run: Run, done: np.ndarray, level: float, *, line_yx: tuple[np.ndarray, np.ndarray],
                   montage: Sequence[int], rendered: Sequence[int], min_part_volume: float,
                   progress: bool = False) -> _Frames:
    """Read each done frame once: its metrics, height / thickness along the line, and the
    height maps and meshes of the frames in ``montage`` / ``rendered``."""
    dz, dy, dx = run.sampling
    ly, lx = line_yx
    nt = run.shape[0]
    got = _Frames(metrics={}, status=list(run.status_names),
                  kymo_height=np.full((nt, ly.size), np.nan), kymo_thick=np.full((nt, ly.size), np.nan))
    for t in _progress(done, progress, f"analysing {len(done)} frames"):
        volume = run.frame(t)
        if not np.isfinite(volume).any():  # marked done but never written: say so, no numbers
            got.status[t] = "empty"
            continue
        occ = occupancy(volume, level)
        got.metrics[t] = frame_metrics(volume, sampling=run.sampling, level=level,
                                       min_part_volume=min_part_volume)
        top, _ = top_bottom(occ, dz)
        region = ndimage.binary_dilation(occ > MATERIAL, structure=np.ones((3, 3, 3), bool))
        thick = np.where(np.isfinite(top), thickness(occ, dz, region), np.nan)
        got.kymo_height[t] = profile(top, ly, lx, (dy, dx))
        got.kymo_thick[t] = profile(thick, ly, lx, (dy, dx))
        if t in montage:
            got.maps[t] = top
        if t in rendered:
            got.meshes[t] = render.material_mesh(occ, run.sampling)
    return got


def analyze(path: str | Path, out: str | Path, *, array: str | None = None,
            config_path: str | Path | None = None, overrides: Sequence[str] = (),
            frame: int | None = None, line_nm: Sequence[float] | None = None,
            min_part_volume: float = 1.0, progress: bool = False) -> Analysis:
    """Analyse the run store at ``path`` into folder ``out``: metrics.csv, PNGs, index.html.

    ``array``: the (t, z, y, x) array to analyse (default volume, else occupancy, else potential);
    ``config_path`` / ``overrides``: replace / amend the run's stored config (the material
    level is its sample.potential); ``frame``: the store index shown in orthogonal slices
    (default: the last reconstructed); ``line_nm``: kymograph line (y0, x0, y1, x1) in nm
    (default: along x through the row crossing most material); ``min_part_volume``: smallest
    part counted (nm³). Raises UserError for a store that is not a run store or has nothing
    reconstructed.
    """
    run = read_run(path, array=array)
    cfg = run_config(run, config_path, tuple(overrides))
    level = material_level(run.name, cfg)
    done = np.flatnonzero(run.done)
    if done.size == 0:
        raise UserError(f"{run.path}: no reconstructed frames yet "
                        f"({status_summary(run.status_names) or 'no frames'})")
    if line_nm is not None and len(line_nm) != 4:
        raise UserError("--line must be four numbers y0,x0,y1,x1 in nm")
    chosen = _choose_frame(run, frame, done)
    chosen_occ = occupancy(run.frame(chosen), level)
    line = (tuple(v * NM for v in line_nm) if line_nm is not None
            else _default_line(run, chosen_occ))
    distance, ly, lx = line_samples(line, min(run.sampling[1:]))
    frames = measure_frames(run, done, level, line_yx=(ly, lx),
                            montage=spread(done, MONTAGE_FRAMES),
                            rendered=spread(done, RENDER_FRAMES),
                            min_part_volume=min_part_volume, progress=progress)
    if not frames.metrics:
        raise UserError(f"{run.path}: every frame marked reconstructed holds no data")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(frame_id=run.frame_id, time_s=run.time, status=frames.status,
                        loss=run.loss, per_frame=frames.metrics)
    csv_path = table.write_csv(out / "metrics.csv")
    files = _draw(run, out, table, frames, chosen=chosen, chosen_occ=chosen_occ, line=line,
                  distance=distance)
    index = report.write_index(out, run=run, config=cfg, level=level, table=table,
                               csv_name=csv_path.name, pictures=files, chosen=chosen,
                               line_nm=tuple(v / NM for v in line))
    return Analysis(out=out, table=table, csv=csv_path, pictures=files, index=index)


def _draw(run: Run, out: Path, table: MetricsTable, frames: _Frames, *, chosen: int,
          chosen_occ: np.ndarray, line: Sequence[float], distance: np.ndarray) -> dict[str, Path]:
    """Every picture of the report, by key; files in ``out``."""
    dz, dy, dx = run.sampling
    montage, rendered = sorted(frames.maps), sorted(frames.meshes)
    # Kymograph rows by time when times advance; by frame index when they do not.
    increasing = bool(np.all(np.diff(run.time) > 0))
    rows = run.time if increasing else np.arange(run.shape[0], dtype=float)
    return {
        "metrics": pictures.plot_metrics(table, out / "metrics.png"),
        "heights": pictures.plot_height_montage(
            [frames.maps[t] for t in montage], [_frame_title(run, t) for t in montage], (dy, dx),
            out / "height_maps.png"),
        "slices": pictures.plot_orthoslices(
            run.frame(chosen), chosen_occ, run.sampling, _slice_centre(chosen_occ),
            f"Orthogonal slices of {run.name}, {_frame_title(run, chosen)}", out / "slices.png",
            value_label="occupancy" if run.name == "occupancy" else f"{run.name} potential (V)"),
        "render": render.plot_render(
            [frames.meshes[t] for t in rendered], [_frame_title(run, t) for t in rendered],
            (run.shape[1] * dz / NM, run.shape[2] * dy / NM, run.shape[3] * dx / NM),
            out / "render3d.png"),
        "kymograph": pictures.plot_kymograph(
            distance, rows, frames.kymo_height, frames.kymo_thick, top_bottom(chosen_occ, dz)[0],
            (dy, dx), line, f"Line on the height map, frame {chosen}", out / "kymograph.png",
            time_label="time (s)" if increasing else "frame"),
    }


def _progress(items: np.ndarray, show: bool, description: str):
    if not show:
        return (int(t) for t in items)
    from rich.progress import track

    return (int(t) for t in track(items, description=description, transient=True))
