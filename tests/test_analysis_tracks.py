"""Objects, tracks, tips and their CSVs against analytic specimens: two spheres that grow and
merge, a disc that splits, discs born one after another, a rod whose tip advances."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis_specimens import SplittingDisc, TwoSpheres, occupancy
from analysis_stores import CFG
from stream3d.analysis.analyze import analyze
from stream3d.analysis.mesh_export import read_ply
from stream3d.analysis.objects import frame_objects
from stream3d.analysis.surface import isosurface, mesh_area
from stream3d.analysis.tips import skeleton_tips, tip_tracks
from stream3d.analysis.tracking import link, track_rows
from stream3d.cli import app
from stream3d.io.writers import TruthWriter
from stream3d.specimen.growing import GrowingDiscs, disc_volume

DT = 0.5  # s between frames
SPHERE_FRAMES = 7  # radii 12 ... 36 Å, centres 60 Å apart: apart until frame 4, merged from 5


def _write_truth(path, occupancies, sampling, frame_interval=DT):
    nz, ny, nx = occupancies[0].shape
    cfg = (CFG.replace("simulate", frames=len(occupancies), ny=ny, nx=nx,
                       frame_interval=frame_interval)
           .replace("sample", slices=nz, slice_thickness=sampling[0], pixel_size=sampling[1]))
    writer = TruthWriter(path, cfg)
    for t, occ in enumerate(occupancies):
        writer.write(t, occ, occ * cfg.sample.potential, (0.0, 0.0))
    return path


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    root = tmp_path_factory.mktemp("spheres")
    spec = TwoSpheres()
    store = _write_truth(root / "truth.zarr", [spec.occupancy(t) for t in range(SPHERE_FRAMES)],
                         spec.sampling)
    result = CliRunner().invoke(app, ["analyze", str(store), "--out", str(root / "out"),
                                      "--min-part", "0.1", "--mesh"])
    assert result.exit_code == 0, result.output
    assert "3 tracks" in result.output
    return spec, root / "out"


def test_two_spheres_objects_csv_has_their_volumes_areas_centroids_and_faces(spheres):
    spec, out = spheres
    rows = _csv(out / "objects.csv")
    assert list(rows[0]) == ["frame", "t", "object", "volume_nm3", "surface_nm2",
                             "centroid_z_nm", "centroid_y_nm", "centroid_x_nm",
                             "lowest_face_nm", "highest_face_nm"]
    for t in range(SPHERE_FRAMES):
        mine = [r for r in rows if int(r["frame"]) == t]
        r = spec.radius(t)
        assert len(mine) == (1 if spec.merged(t) else 2), t
        for row in mine:
            assert float(row["t"]) == pytest.approx(t * DT)
            assert float(row["volume_nm3"]) == pytest.approx(spec.volume(t) / 1e3, rel=0.01), t
            assert float(row["centroid_z_nm"]) == pytest.approx(spec.centre_h / 10, abs=0.02)
            assert float(row["centroid_y_nm"]) == pytest.approx(spec.centre_y / 10, abs=0.02)
            # Faces: the sphere's top and bottom, within the grid's half slice (clipped by the cell).
            assert float(row["highest_face_nm"]) == pytest.approx(
                min(spec.centre_h + r, 80.0) / 10, abs=0.2)
            assert float(row["lowest_face_nm"]) == pytest.approx(
                max(spec.centre_h - r, 0.0) / 10, abs=0.2)
        if not spec.merged(t):
            xs = sorted(float(row["centroid_x_nm"]) for row in mine)
            assert xs == pytest.approx([x / 10 for x in spec.xs], abs=0.01)
            for row in mine:  # whole spheres, inside the cell: 4 pi r²
                assert float(row["surface_nm2"]) == pytest.approx(4 * math.pi * r**2 / 100,
                                                                  rel=0.05)
        else:
            assert float(mine[0]["centroid_x_nm"]) == pytest.approx(sum(spec.xs) / 20, abs=0.01)


def test_two_spheres_tracks_csv_births_merge_and_growth_rates(spheres):
    spec, out = spheres
    rows = _csv(out / "tracks.csv")
    assert list(rows[0])[:4] == ["track", "frame", "t", "volume_nm3"][:1] + ["frame", "t", "object"]
    for name in ("track", "frame", "t", "volume_nm3", "growth_rate_nm3_s", "event"):
        assert name in rows[0]
    first_merged = next(t for t in range(SPHERE_FRAMES) if spec.merged(t))
    by = {}
    for r in rows:
        by.setdefault(int(r["track"]), []).append(r)
    assert sorted(by) == [1, 2, 3]
    for k in (1, 2):
        assert [int(r["frame"]) for r in by[k]] == list(range(first_merged))
        assert by[k][0]["event"] == "birth" and by[k][0]["parents"] == ""
        assert all(r["event"] == "" for r in by[k][1:])  # ended by the merge, not lost
    assert [int(r["frame"]) for r in by[3]] == list(range(first_merged, SPHERE_FRAMES))
    assert by[3][0]["event"] == "merge" and by[3][0]["parents"] == "1 2"
    # Growth rate: slope of a line through the analytic volumes of the frame and up to two
    # frames either side within the track.
    for i in range(first_merged):
        window = list(range(max(0, i - 2), min(first_merged, i + 3)))
        expected = np.polyfit(np.array(window) * DT, [spec.volume(f) / 1e3 for f in window], 1)[0]
        assert float(by[1][i]["growth_rate_nm3_s"]) == pytest.approx(expected, rel=0.02)
    assert all(float(r["growth_rate_nm3_s"]) > 0 for r in rows)


def test_mesh_per_frame_is_a_ply_of_the_surface(spheres):
    spec, out = spheres
    files = sorted((out / "meshes").glob("*.ply"))
    assert [f.name for f in files] == [f"frame_{t:05d}.ply" for t in range(SPHERE_FRAMES)]
    v, f = read_ply(files[1])
    area = mesh_area(v[f])  # nm²
    assert area == pytest.approx(2 * 4 * math.pi * spec.radius(1) ** 2 / 100, rel=0.05)
    # x, y, z = x, y, height in nm: the spheres' centres are inside the vertex cloud.
    assert v[:, 2].min() == pytest.approx((spec.centre_h - spec.radius(1)) / 10, abs=0.2)
    assert v[:, 0].max() == pytest.approx((spec.xs[1] + spec.radius(1)) / 10, abs=0.1)


def test_disc_that_splits_gives_two_children_with_shrinking_halves(tmp_path):
    spec = SplittingDisc()
    n = 6
    store = _write_truth(tmp_path / "truth.zarr", [spec.occupancy(t) for t in range(n)],
                         spec.sampling)
    result = analyze(store, tmp_path / "out", min_part_volume=0.1)
    objects = _csv(tmp_path / "out" / "objects.csv")
    whole = math.pi * spec.r**2 * (spec.h1 - spec.h0)
    for t in range(n):
        mine = [r for r in objects if int(r["frame"]) == t]
        if t < spec.split_at:
            assert len(mine) == 1
            assert float(mine[0]["volume_nm3"]) == pytest.approx(whole / 1e3, rel=0.01)
            assert float(mine[0]["surface_nm2"]) == pytest.approx(
                (2 * math.pi * spec.r**2 + 2 * math.pi * spec.r * (spec.h1 - spec.h0)) / 100,
                rel=0.06)
        else:
            assert len(mine) == 2
            for r in mine:
                assert float(r["volume_nm3"]) == pytest.approx(spec.half_volume(t) / 1e3, rel=0.01)
                assert float(r["lowest_face_nm"]) == pytest.approx(spec.h0 / 10, abs=0.05)
                assert float(r["highest_face_nm"]) == pytest.approx(spec.h1 / 10, abs=0.05)
    tracks = _csv(tmp_path / "out" / "tracks.csv")
    starts = {(r["track"], r["frame"], r["event"], r["parents"]) for r in tracks if r["event"]}
    assert starts == {("1", "0", "birth", ""), ("2", str(spec.split_at), "split", "1"),
                      ("3", str(spec.split_at), "split", "1")}
    assert [t.end(n - 1) for t in result.tracks] == ["split", "present", "present"]
    # The halves shrink as the slot opens: a line through the child's analytic volumes.
    child = [r for r in tracks if r["track"] == "2"]
    frames = list(range(spec.split_at, n))
    expected = np.polyfit(np.array(frames) * DT, [spec.half_volume(f) / 1e3 for f in frames], 1)[0]
    assert float(child[1]["growth_rate_nm3_s"]) == pytest.approx(expected, rel=0.03)
    assert expected < 0


def test_an_object_that_vanishes_is_a_loss_and_a_late_one_a_birth():
    spec = TwoSpheres()
    keep_left = occupancy(lambda h, y, x: (h - 40) ** 2 + (y - 40) ** 2 + (x - 42) ** 2 <= 144,
                          spec.shape, spec.sampling)
    both = spec.occupancy(0)
    frames = [keep_left, both, both, keep_left]  # right sphere: born at 1, gone at 3
    objs = [frame_objects(o, frame=t, t=t * DT, sampling=spec.sampling, level=1.0,
                          min_volume_nm3=0.1) for t, o in enumerate(frames)]
    tracks = link(range(4), [o.labels for o in objs])
    by_key = {(r.frame, r.object): r for o in objs for r in o.rows}
    rows = track_rows(tracks, by_key, last_frame=3)
    events = [(r.track, r.frame, r.event) for r in rows if r.event]
    assert events == [(1, 0, "birth"), (2, 1, "birth"), (2, 2, "loss")]
    assert [t.end(3) for t in tracks] == ["present", "loss"]


def test_discs_born_one_after_another_are_tracked_from_their_birth_frames():
    shape, sampling = (8, 96, 96), (20.0, 2.0, 2.0)
    spec = GrowingDiscs(shape, sampling, heights=(40.0, 80.0, 120.0), thickness=30.0,
                        births=(0, 2, 4), r0=12.0, growth=3.0)
    objs = [frame_objects(spec.occupancy(t), frame=t, t=t * DT, sampling=sampling, level=1.0,
                          min_volume_nm3=0.1) for t in range(7)]
    tracks = link(range(7), [o.labels for o in objs])
    assert [(tr.frames[0], tr.start, tr.end(6)) for tr in tracks] == [
        (0, "birth", "present"), (2, "birth", "present"), (4, "birth", "present")]
    by_key = {(r.frame, r.object): r for o in objs for r in o.rows}
    for k, tr in enumerate(tracks):
        for f, o in zip(tr.frames, tr.objects):
            r = spec.radius(k, f)
            assert by_key[(f, o)].volume_nm3 == pytest.approx(disc_volume(r, 30.0) / 1e3, rel=0.03)


def test_marching_cubes_area_of_a_partial_volume_sphere():
    # The comparison that chose marching cubes: sphere r = 14 Å on 1 Å voxels, area within 1 %.
    occ = occupancy(lambda h, y, x: (h - 20) ** 2 + (y - 20.3) ** 2 + (x - 19.6) ** 2 <= 196,
                    (40, 40, 40), (1.0, 1.0, 1.0))
    assert mesh_area(isosurface(occ, 0.5, (1.0, 1.0, 1.0))) == pytest.approx(
        4 * math.pi * 14**2, rel=0.01)


def test_tip_of_a_growing_rod_moves_at_its_growth_speed():
    shape, sampling, speed = (8, 40, 120), (20.0, 2.0, 2.0), 12.0

    def rod(t):
        end = 40.0 + speed * t
        return occupancy(lambda h, y, x: ((h - 70) ** 2 + (y - 40) ** 2 <= 144) & (x >= 30) & (x <= end),
                         shape, sampling)

    tips = [skeleton_tips(rod(t), sampling) for t in range(8)]
    rows, velocities = tip_tracks(list(range(8)), [t * DT for t in range(8)], tips, max_step=30.0)
    # Two ends once the rod is longer than thick: the fixed back end and the growing tip.
    long_lived = [v for v in velocities if v.frames >= 5]
    assert sorted(round(v.speed_A_per_frame) for v in long_lived) == [0, 12]
    v = max(long_lived, key=lambda v: v.speed_A_per_frame)
    assert v.speed_A_per_frame == pytest.approx(speed, rel=0.1)
    assert v.velocity_A_per_frame[2] == pytest.approx(speed, rel=0.1)  # along +x
    assert abs(v.velocity_A_per_frame[0]) < 1.0 and abs(v.velocity_A_per_frame[1]) < 1.0
    assert v.speed_nm_s == pytest.approx(v.speed_A_per_frame / 10 / DT)


def test_like_shares_scales_and_a_bad_like_is_one_line(spheres, tmp_path):
    spec, out = spheres
    small = _write_truth(tmp_path / "small.zarr", [spec.occupancy(t) for t in range(2)],
                         spec.sampling)
    result = CliRunner().invoke(app, ["analyze", str(small), "--out", str(tmp_path / "a"),
                                      "--min-part", "0.1", "--like", str(out)])
    assert result.exit_code == 0, result.output
    assert "shared with" in (tmp_path / "a" / "index.html").read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, ["analyze", str(small), "--out", str(tmp_path / "b"),
                                   "--like", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "no scales.json" in bad.output
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1


def test_an_object_whose_height_jumps_keeps_its_track_and_layers_stay_apart():
    # A reconstruction may put the same disc 40 Å higher in the next frame: no 3D overlap, but
    # the same columns. Two discs stacked in the same columns keep their own tracks.
    shape, sampling = (10, 48, 48), (10.0, 2.0, 2.0)

    def disc(h0, h1):
        return lambda h, y, x: ((y - 48) ** 2 + (x - 48) ** 2 <= 400) & (h >= h0) & (h <= h1)

    jump = [occupancy(disc(10, 30), shape, sampling), occupancy(disc(60, 80), shape, sampling),
            occupancy(disc(20, 40), shape, sampling)]
    objs = [frame_objects(o, frame=t, t=t * DT, sampling=sampling, level=1.0,
                          min_volume_nm3=0.1) for t, o in enumerate(jump)]
    tracks = link(range(3), [o.labels for o in objs])
    assert [(tr.frames, tr.start) for tr in tracks] == [([0, 1, 2], "birth")]
    stacked = occupancy(lambda h, y, x: disc(10, 30)(h, y, x) | disc(60, 80)(h, y, x), shape,
                        sampling)
    objs = [frame_objects(stacked, frame=t, t=t * DT, sampling=sampling, level=1.0,
                          min_volume_nm3=0.1) for t in range(3)]
    tracks = link(range(3), [o.labels for o in objs])
    assert [tr.frames for tr in tracks] == [[0, 1, 2], [0, 1, 2]]
    assert all(len(set(tr.objects)) == 1 for tr in tracks)  # each stays with its own disc


def test_surfaces_at_the_data_resolution_ignore_a_ragged_rim():
    # A disc whose rim pixels (within 3 px of the edge) are randomly in or out, as a noisy
    # reconstruction's mask: at the pixel grid its area is inflated, at the pop-out resolution
    # (default for runs: 2.355 x popout.resolution) it matches the clean disc's.
    shape, sampling, r = (8, 64, 64), (10.0, 1.0, 1.0), 20.0
    clean = occupancy(lambda h, y, x: ((y - 32) ** 2 + (x - 32) ** 2 <= r * r) & (h >= 20) & (h <= 60),
                      shape, sampling)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64] + 0.5
    rim = (np.abs(np.hypot(yy - 32, xx - 32) - r) < 3) & (rng.random((64, 64)) < 0.35)
    ragged = clean.copy()
    for j, i in zip(*np.nonzero(rim)):
        ragged[:, j, i] = clean[:, 32, 32] if rng.random() < 0.5 else 0.0
    from stream3d.analysis.analyze import default_resolution

    res = 2.5 * 2.3548  # popout.resolution = 2.5 Å (default config), as a FWHM

    def area(occ, resolution):
        rows = frame_objects(occ * 5.0, frame=0, t=0.0, sampling=sampling, level=5.0,
                             resolution=resolution).rows
        assert len(rows) == 1
        return rows[0].surface_nm2

    assert area(ragged, 0.0) > 1.12 * area(clean, 0.0)
    assert area(ragged, res) == pytest.approx(area(clean, res), rel=0.03)

    class _Run:  # what default_resolution reads: the array's name
        name = "volume"

    assert default_resolution(_Run(), CFG) == pytest.approx(res, rel=1e-3)
    _Run.name = "occupancy"
    assert default_resolution(_Run(), CFG) == 0.0


def test_a_negative_resolution_is_one_line_exit_2(spheres, tmp_path):
    _, out = spheres
    store = out.parent / "truth.zarr"
    result = CliRunner().invoke(app, ["analyze", str(store), "--out", str(tmp_path / "x"),
                                      "--resolution", "-1"])
    assert result.exit_code == 2 and "--resolution must be >= 0" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("registered", [True, False])
def test_a_drifting_static_rod_shows_no_growth_and_no_tip_motion_in_specimen_coordinates(
        tmp_path, registered):
    """Issue 23: the stage's drift is not growth. A static rod imaged while the stage drifts
    1.7 px/frame: with the drift stored (``shift``) its centroid and tips stand still and its
    volume is constant; without it, the same frames show the rod moving."""
    from stream3d.movie import shift_occupancy

    shape, sampling, frames = (8, 48, 96), (20.0, 2.0, 2.0), 6
    rod = occupancy(lambda h, y, x: ((h - 70) ** 2 + (y - 40) ** 2 <= 144) & (x >= 50)
                    & (x <= 120), shape, sampling)
    drift = np.array([[0.6 * t, 1.7 * t] for t in range(frames)]) * sampling[1]  # Å
    cfg = (CFG.replace("simulate", frames=frames, ny=shape[1], nx=shape[2], frame_interval=DT)
           .replace("sample", slices=shape[0], slice_thickness=sampling[0],
                    pixel_size=sampling[1]))
    writer = TruthWriter(tmp_path / "truth.zarr", cfg)
    for t in range(frames):
        occ = shift_occupancy(rod, tuple(drift[t] / sampling[1]))
        writer.write(t, occ, occ * cfg.sample.potential,
                     tuple(drift[t]) if registered else (0.0, 0.0))
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "truth.zarr"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    objects = _csv(tmp_path / "out" / "objects.csv")
    assert len(objects) == frames  # one object per frame
    x = np.array([float(r["centroid_x_nm"]) for r in objects]) * 10  # Å
    y = np.array([float(r["centroid_y_nm"]) for r in objects]) * 10
    volume = np.array([float(r["volume_nm3"]) for r in objects])
    moved_A = math.hypot(x[-1] - x[0], y[-1] - y[0])
    if registered:
        assert moved_A < 0.5 and np.ptp(volume) / volume.mean() < 0.03
        tips = _csv(tmp_path / "out" / "tips.csv")
        speeds = [float(r["speed_A_per_frame"]) for r in tips
                  if r.get("speed_A_per_frame") not in (None, "")]
        assert speeds and max(speeds) < 0.5  # Å per frame: the tips stand still
    else:
        assert moved_A == pytest.approx(math.hypot(*drift[-1]), rel=0.05)
