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

from stream3d.analysis import pictures, render, report, track_pictures
from stream3d.analysis.frames import spread
from stream3d.analysis.mesh_export import material_surface, write_ply
from stream3d.analysis.objects import FrameObjects, ObjectRow, frame_objects, lateral_sigma_px
from stream3d.analysis.scales import Scales, limits, read_scales, span_of
from stream3d.analysis.tips import (
    TipRow, TipVelocity, growth_line, skeleton_tips, tip_tracks, write_tips_csv,
)
from stream3d.analysis.tracking import (
    Track, TrackRow, link, summary_rows, track_rows, write_objects_csv, write_tracks_csv,
)
from stream3d.analysis.maps import MATERIAL, line_samples, profile, thickness, top_bottom
from stream3d.analysis.metrics import (
    NM, FrameMetrics, MetricsTable, build_table, frame_metrics, occupancy,
)
from stream3d.analysis.run import Run, material_level, read_run, run_config, status_summary
from stream3d.errors import UserError
from stream3d.specimen.catalog import tip_speed

MONTAGE_FRAMES = 8
RENDER_FRAMES = 4
TIP_STEP_FACTOR = 6.0  # a tip links to one at most this many tip voxels away in the next frame


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` wrote: the tables and the paths of every file in ``out``."""

    out: Path
    table: MetricsTable
    csv: Path
    pictures: dict[str, Path]
    index: Path
    objects: list[ObjectRow] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    track_rows: list[TrackRow] = field(default_factory=list)
    tips: list[TipRow] = field(default_factory=list)
    tip_velocities: list[TipVelocity] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # CSVs, meshes folder, scales.json
    errors: list = field(default_factory=list)  # truth.FrameErrors per frame, with --truth


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
    objects: dict[int, FrameObjects] = field(default_factory=dict)  # labels and rows per frame
    tips: dict[int, np.ndarray] = field(default_factory=dict)  # (n, 3) tip positions, Å


def measure_frames(run: Run, done: np.ndarray, level: float, *, line_yx: tuple[np.ndarray, np.ndarray],
                   montage: Sequence[int], rendered: Sequence[int], min_part_volume: float,
                   resolution: float = 0.0, mesh_dir: Path | None = None,
                   progress: bool = False) -> _Frames:
    """Read each done frame once: its metrics, objects and tips, height / thickness along the
    line, the height maps and meshes of the frames in ``montage`` / ``rendered``, and (with
    ``mesh_dir``) its surface as a PLY file."""
    dz, dy, dx = run.sampling
    ly, lx = line_yx
    nt = run.shape[0]
    got = _Frames(metrics={}, status=list(run.status_names),
                  kymo_height=np.full((nt, ly.size), np.nan), kymo_thick=np.full((nt, ly.size), np.nan))
    for t in _progress(done, progress, f"analysing {len(done)} frames"):
        # Specimen coordinates: the stage's drift is not growth (issue 23).
        volume, residual = run.specimen_frame(t)
        origin = (run.origin[0] - residual[0], run.origin[1] - residual[1])
        if not np.isfinite(volume).any():  # marked done but never written: say so, no numbers
            got.status[t] = "empty"
            continue
        occ = occupancy(volume, level)
        got.metrics[t] = frame_metrics(volume, sampling=run.sampling, level=level,
                                       min_part_volume=min_part_volume, resolution=resolution)
        got.objects[t] = frame_objects(volume, frame=t, t=float(run.time[t]), sampling=run.sampling,
                                       level=level, min_volume_nm3=min_part_volume,
                                       resolution=resolution, origin=origin)
        got.tips[t] = skeleton_tips(occ, run.sampling, min_volume=min_part_volume * NM**3) \
            - np.array([0.0, residual[0], residual[1]])
        if mesh_dir is not None:
            verts, faces = material_surface(occ, run.sampling,
                                            lateral_sigma_px(resolution, min(dy, dx)))
            write_ply(mesh_dir / f"frame_{t:05d}.ply", verts, faces,
                      comment=f"stream3d material surface, frame {t}, t = {run.time[t]:.6g} s, nm")
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


def default_resolution(run: Run, config) -> float:
    """Å FWHM at which surfaces are measured: a truth store's occupancy is exact (0: the grid);
    a reconstruction resolves no finer than the pop-out's lateral low-pass (popout.resolution
    is its Gaussian sigma), and finer wiggles are noise that would inflate the area."""
    if run.name == "occupancy":
        return 0.0
    from stream3d.analysis.metrics import FWHM_PER_SIGMA

    return float(config.popout.resolution) * FWHM_PER_SIGMA


def analyze(path: str | Path, out: str | Path, *, array: str | None = None,
            config_path: str | Path | None = None, overrides: Sequence[str] = (),
            frame: int | None = None, line_nm: Sequence[float] | None = None,
            min_part_volume: float = 5.0, resolution: float | None = None, mesh: bool = False,
            like: str | Path | None = None, truth: str | Path | None = None,
            progress: bool = False) -> Analysis:
    """Analyse the run store at ``path`` into folder ``out``: metrics.csv, objects.csv,
    tracks.csv, tips.csv, PNGs, index.html (and with ``mesh`` a PLY surface per frame).

    ``array``: the (t, z, y, x) array to analyse (default volume, else occupancy, else potential);
    ``config_path`` / ``overrides``: replace / amend the run's stored config (the material
    level is its sample.potential); ``frame``: the store index shown in orthogonal slices
    (default: the last reconstructed); ``line_nm``: kymograph line (y0, x0, y1, x1) in nm
    (default: along the lateral path of the tip that travelled furthest, else along x through
    the row crossing most material); ``min_part_volume``: smallest object (nm³);
    ``resolution``: Å FWHM at which surfaces are measured (default
    :func:`default_resolution`); ``like``: a report folder whose scales the pictures share;
    ``truth``: the truth.zarr of a simulated movie: errors.csv and truth / pop-out / refined
    pictures side by side join the report.
    Raises UserError for a store that is not a run store or has nothing reconstructed.
    """
    # 1. What to read, checked before anything is written.
    run, cfg, level, done = _open(path, array, config_path, overrides)
    _check_options(line_nm, resolution)
    shared = read_scales(like) if like is not None else None
    resolution = default_resolution(run, cfg) if resolution is None else float(resolution)
    chosen = _choose_frame(run, frame, done)
    chosen_occ = occupancy(run.frame(chosen), level)
    line = (tuple(v * NM for v in line_nm) if line_nm is not None
            else _default_line(run, chosen_occ))
    out, mesh_dir = _output_folder(Path(out), mesh)
    # 2. One pass over the frames; then the objects' and tips' tracks over time.
    distance, ly, lx = line_samples(line, min(run.sampling[1:]))
    frames = measure_frames(run, done, level, line_yx=(ly, lx),
                            montage=spread(done, MONTAGE_FRAMES),
                            rendered=spread(done, RENDER_FRAMES),
                            min_part_volume=min_part_volume, resolution=resolution,
                            mesh_dir=mesh_dir, progress=progress)
    if not frames.metrics:
        raise UserError(f"{run.path}: every frame marked reconstructed holds no data")
    growth = _growth(run, frames)
    if line_nm is None and growth.line is not None:  # follow the growth: a second, cheap pass
        line = growth.line
        distance = _follow_line(run, frames, level, line)
    # 3. Tables, pictures (on shared scales), the comparison with a truth, the page.
    table, files = _write_tables(run, out, frames, growth, mesh_dir)
    scales = _scales(table, frames, growth)
    files["scales.json"] = scales.write(out)
    pics = _draw(run, out, table, frames, growth,
                 scales.union(shared) if shared is not None else scales, chosen=chosen,
                 chosen_occ=chosen_occ, line=line, distance=distance,
                 expected_tip_speed=_expected_tip_speed(run, cfg, truth))
    errors = _compare_with_truth(path, truth, out, files, pics) if truth is not None else None
    index = report.write_index(
        out, run=run, config=cfg, level=level, table=table, csv_name=files["metrics.csv"].name,
        pictures=pics, chosen=chosen, line_nm=tuple(v / NM for v in line),
        tracks=summary_rows(growth.tracks, growth.by_key, int(max(frames.metrics))),
        velocities=growth.velocities,
        files={k: p for k, p in files.items() if k != "scales.json"}, resolution=resolution,
        line_source="given" if line_nm is not None else (
            "along the fastest-travelling tip" if growth.line is not None else "automatic"),
        like=str(like) if like is not None else None, errors=errors)
    return Analysis(out=out, table=table, csv=files["metrics.csv"], pictures=pics, index=index,
                    objects=growth.objects, tracks=growth.tracks, track_rows=growth.rows,
                    tips=growth.tip_rows, tip_velocities=growth.velocities, files=files,
                    errors=errors or [])


def _open(path: str | Path, array: str | None, config_path: str | Path | None,
          overrides: Sequence[str]):
    """(run, config, material level, indices of the done frames); UserError when none is."""
    run = read_run(path, array=array)
    cfg = run_config(run, config_path, tuple(overrides))
    level = material_level(run.name, cfg)
    done = np.flatnonzero(run.done)
    if done.size == 0:
        raise UserError(f"{run.path}: no reconstructed frames yet "
                        f"({status_summary(run.status_names) or 'no frames'})")
    return run, cfg, level, done


def _check_options(line_nm: Sequence[float] | None, resolution: float | None) -> None:
    if line_nm is not None and len(line_nm) != 4:
        raise UserError("--line must be four numbers y0,x0,y1,x1 in nm")
    if resolution is not None and not resolution >= 0:
        raise UserError(f"--resolution must be >= 0 Å, got {resolution}")


def _output_folder(out: Path, mesh: bool) -> tuple[Path, Path | None]:
    """``out`` (made), and its meshes/ folder (made) when PLY surfaces are asked for."""
    out.mkdir(parents=True, exist_ok=True)
    mesh_dir = out / "meshes" if mesh else None
    if mesh_dir is not None:
        mesh_dir.mkdir(exist_ok=True)
    return out, mesh_dir


def _follow_line(run: Run, frames: _Frames, level: float, line: Sequence[float]) -> np.ndarray:
    """Redo the kymograph along ``line`` (Å) in ``frames``; the distances along it."""
    distance, ly, lx = line_samples(line, min(run.sampling[1:]))
    frames.kymo_height, frames.kymo_thick = _kymograph(run, sorted(frames.metrics), level,
                                                       (ly, lx))
    return distance


def _write_tables(run: Run, out: Path, frames: _Frames, growth: _Growth,
                  mesh_dir: Path | None) -> tuple[MetricsTable, dict[str, Path]]:
    """metrics.csv, objects.csv, tracks.csv, tips.csv in ``out``: the table and the paths."""
    table = build_table(frame_id=run.frame_id, time_s=run.time, status=frames.status,
                        loss=run.loss, per_frame=frames.metrics)
    files = {"metrics.csv": table.write_csv(out / "metrics.csv"),
             "objects.csv": write_objects_csv(growth.objects, out / "objects.csv"),
             "tracks.csv": write_tracks_csv(growth.rows, out / "tracks.csv"),
             "tips.csv": write_tips_csv(growth.tip_rows, growth.velocities, out / "tips.csv")}
    if mesh_dir is not None:
        files["meshes"] = mesh_dir
    return table, files


def _expected_tip_speed(run: Run, cfg, truth: str | Path | None) -> float | None:
    """Å per frame the tips should show: known for a simulated specimen (its truth store, or
    a run compared with its truth) whose tips grow at a set speed; None otherwise."""
    simulated = run.name == "occupancy" or truth is not None
    return tip_speed(cfg) if simulated else None


def _compare_with_truth(path: str | Path, truth: str | Path, out: Path, files: dict[str, Path],
                        pics: dict[str, Path]) -> list:
    """errors.csv and the side-by-side pictures against ``truth`` (added to ``files`` and
    ``pics``); the per-frame errors."""
    from stream3d.analysis.truth import compare_to_truth, write_comparison

    errors = compare_to_truth(path, truth)
    written = write_comparison(path, truth, out, errors)
    files["errors.csv"] = written.pop("errors.csv")
    pics.update(written)
    return errors


@dataclass
class _Growth:
    """Objects of every frame, their tracks and the tips' tracks."""

    objects: list[ObjectRow]
    by_key: dict[tuple[int, int], ObjectRow]
    tracks: list[Track]
    rows: list[TrackRow]
    tip_rows: list[TipRow]
    velocities: list[TipVelocity]
    line: tuple[float, float, float, float] | None  # growth direction across the field, Å


def _growth(run: Run, frames: _Frames) -> _Growth:
    order = sorted(frames.objects)
    objects = [r for t in order for r in frames.objects[t].rows]
    by_key = {(r.frame, r.object): r for r in objects}
    tracks = link(order, [frames.objects[t].labels for t in order])
    rows = track_rows(tracks, by_key, last_frame=order[-1])
    from stream3d.analysis.tips import tip_voxel

    tip_rows, velocities = tip_tracks(order, [float(run.time[t]) for t in order],
                                      [frames.tips[t] for t in order],
                                      max_step=TIP_STEP_FACTOR * tip_voxel(run.sampling))
    _, _, ny, nx = run.shape
    _, dy, dx = run.sampling
    line = growth_line(velocities, tip_rows, (ny * dy, nx * dx))
    return _Growth(objects, by_key, tracks, rows, tip_rows, velocities, line)


def _kymograph(run: Run, frames: Sequence[int], level: float,
               line_yx: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Height of the top and thickness (Å) along the line at every frame (NaN elsewhere)."""
    dz, dy, dx = run.sampling
    ly, lx = line_yx
    heights = np.full((run.shape[0], ly.size), np.nan)
    thick = np.full_like(heights, np.nan)
    for t in frames:
        occ = occupancy(run.specimen_frame(t)[0], level)
        top, _ = top_bottom(occ, dz)
        region = ndimage.binary_dilation(occ > MATERIAL, structure=np.ones((3, 3, 3), bool))
        heights[t] = profile(top, ly, lx, (dy, dx))
        thick[t] = profile(np.where(np.isfinite(top), thickness(occ, dz, region), np.nan),
                           ly, lx, (dy, dx))
    return heights, thick


def _scales(table: MetricsTable, frames: _Frames, growth: _Growth) -> Scales:
    ok = table.analysed
    maps = [m for m in frames.maps.values()]
    heights = np.concatenate([np.ravel(m) for m in maps] + [np.ravel(frames.kymo_height)]) / NM
    return Scales(
        height_nm=span_of(heights),
        thickness_nm=(0.0, span_of(frames.kymo_thick / NM)[1]),
        volume_nm3=(0.0, span_of(table.column("volume_nm3")[ok])[1]),
        track_volume_nm3=(0.0, span_of([r.volume_nm3 for r in growth.rows])[1]),
        area_nm2=(0.0, span_of(table.column("area_nm2")[ok])[1]),
        time_s=span_of(table.time_s),
    )


def _draw(run: Run, out: Path, table: MetricsTable, frames: _Frames, growth: _Growth,
          scales: Scales, *, chosen: int, chosen_occ: np.ndarray, line: Sequence[float],
          distance: np.ndarray, expected_tip_speed: float | None = None) -> dict[str, Path]:
    """Every picture of the report, by key; files in ``out``; ranges from ``scales``."""
    dz, dy, dx = run.sampling
    montage, rendered = sorted(frames.maps), sorted(frames.meshes)
    # Kymograph rows by time when times advance; by frame index when they do not.
    increasing = bool(np.all(np.diff(run.time) > 0))
    rows = run.time if increasing else np.arange(run.shape[0], dtype=float)
    cell = (run.shape[1] * dz / NM, run.shape[2] * dy / NM, run.shape[3] * dx / NM)
    pics = {
        "metrics": pictures.plot_metrics(
            table, out / "metrics.png",
            ylimits={"volume_nm3": limits(scales.volume_nm3, 0.05),
                     "area_nm2": limits(scales.area_nm2, 0.05)}),
        "track_volumes": track_pictures.plot_track_volumes(
            growth.rows, growth.tracks, out / "track_volumes.png",
            volume_max=limits(scales.track_volume_nm3, 0.05)[1],
            time_label="time (s)"),
        "tracks3d": track_pictures.plot_tracks_3d(
            growth.rows, growth.tip_rows, cell, out / "tracks3d.png",
            shown_tips={v.tip for v in growth.velocities}),
        "heights": pictures.plot_height_montage(
            [frames.maps[t] for t in montage], [_frame_title(run, t) for t in montage], (dy, dx),
            out / "height_maps.png", limits=limits(scales.height_nm)),
        "slices": pictures.plot_orthoslices(
            run.frame(chosen), chosen_occ, run.sampling, _slice_centre(chosen_occ),
            f"Orthogonal slices of {run.name}, {_frame_title(run, chosen)}", out / "slices.png",
            value_label="occupancy" if run.name == "occupancy" else f"{run.name} potential (V)"),
        "render": render.plot_render(
            [frames.meshes[t] for t in rendered], [_frame_title(run, t) for t in rendered],
            cell, out / "render3d.png"),
        "kymograph": pictures.plot_kymograph(
            distance, rows, frames.kymo_height, frames.kymo_thick, top_bottom(chosen_occ, dz)[0],
            (dy, dx), line, f"Line on the height map, frame {chosen}", out / "kymograph.png",
            time_label="time (s)" if increasing else "frame",
            height_limits=limits(scales.height_nm), thickness_limits=limits(scales.thickness_nm)),
    }
    if growth.velocities:
        pics["tips"] = track_pictures.plot_tip_speeds(growth.velocities, out / "tip_speeds.png",
                                                      expected=expected_tip_speed)
    return pics


def _progress(items: np.ndarray, show: bool, description: str):
    if not show:
        return (int(t) for t in items)
    from rich.progress import track

    return (int(t) for t in track(items, description=description, transient=True))
