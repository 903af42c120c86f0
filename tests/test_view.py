"""Region of interest and binning (stream.roi, stream.bin): config checks, exact binned frames,
and runs whose raw frames are stored whole while the volumes cover the binned ROI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.analysis.run import read_run
from stream3d.cli import app
from stream3d.config import ConfigError
from stream3d.io.movies import write_mrc_movie
from stream3d.ome import scale_of, translation_of
from stream3d.store import RunStore, Status
from stream3d.stream import FileSource, Stages, run_pipeline
from stream3d.stream.view_stages import ViewPopout, ViewRefinerFactory
from stream3d.view import compute_config, view_for
from stream_helpers import REAL_SETS, RefinerDouble, expected_popout, hrtem_movie, popout_double


@pytest.mark.parametrize("sets, message", [
    (["stream.roi=[0, 0, 65, 64]", "stream.bin=2"],
     "stream.roi [0, 0, 65, 64] is 65 x 64 px, not a multiple of stream.bin = 2 px: "
     "e.g. [0, 0, 64, 64]"),
    (["stream.roi=[5, 0, 5, 10]"], "stream.roi [5, 0, 5, 10] is empty"),
    (["stream.roi=[8, 9, 4, 20]"], "stream.roi [8, 9, 4, 20] is empty"),
    (["stream.roi=[0, 0, 1.5, 3]"], "stream.roi must be an array of integers"),
    (["stream.roi=[0, 0, 3]"], "stream.roi must be [] (whole frame) or [y0, x0, y1, x1] px"),
    (["stream.roi=[-1, 0, 3, 3]"], "stream.roi [-1, 0, 3, 3] must have no negative pixel"),
    (["stream.roi=[true, 0, 3, 3]"], "stream.roi must be an array of integers"),
    (["stream.bin=0"], "stream.bin must be an integer >= 1"),
    (["stream.bin=1.5"], "stream.bin must be an integer"),
])
def test_bad_roi_or_bin_is_one_line_naming_the_key(sets, message):
    with pytest.raises(ConfigError) as err:
        config_mod.load(None, sets)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_roi_and_bin_round_trip_through_toml():
    cfg = config_mod.load(None, ["stream.roi=[4, 8, 36, 72]", "stream.bin=4"])
    again = config_mod.from_dict(__import__("tomllib").loads(config_mod.to_toml(cfg)))
    assert again.stream.roi == (4, 8, 36, 72) and again.stream.bin == 4
    assert config_mod.load(None).stream.roi == ()  # the default: the whole frame


def test_a_binned_frame_is_the_exact_sum_of_its_blocks():
    frame = np.arange(7 * 9, dtype=np.uint16).reshape(7, 9)
    cfg = config_mod.load(None, ["stream.roi=[1, 2, 5, 8]", "stream.bin=2"])
    view = view_for(cfg, frame.shape)
    got = view.apply(frame)
    # rows 1..4, columns 2..7, 2 x 2 blocks: e.g. the first = 11 + 12 + 20 + 21
    want = np.array([[64, 72, 80], [136, 144, 152]], np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert view.shape == (2, 3) and view.pixel_size == 2 * cfg.sample.pixel_size
    assert view.origin == (1.0, 2.0)
    # The whole frame with a bin that does not divide it: the bottom row and right column go.
    whole = view_for(config_mod.load(None, ["stream.bin=2"]), frame.shape)
    assert whole.roi == (0, 0, 6, 8) and whole.shape == (3, 4)
    assert whole.apply(frame)[2, 3] == frame[4:6, 6:8].sum()
    # Counts add: a binned Poisson frame keeps mean = dose x (bin x pixel size)².
    counts = np.random.default_rng(0).poisson(500.0, (64, 64))
    binned = view_for(config_mod.load(None, ["stream.bin=4"]), counts.shape).apply(counts)
    assert binned.sum() == counts.sum()
    assert abs(binned.var() / binned.mean() - 1) < 0.3  # still Poisson: variance = mean


def test_roi_outside_the_frame_is_refused_once_the_frame_is_known():
    cfg = config_mod.load(None, ["stream.roi=[0, 0, 64, 80]"])
    with pytest.raises(ConfigError, match=r"stream.roi \[0, 0, 64, 80\] reaches beyond the "
                                          r"64 x 64 px frame"):
        view_for(cfg, (64, 64))


def test_compute_config_has_the_binned_pixel_size():
    cfg = config_mod.load(None, ["sample.pixel_size=0.5", "stream.roi=[0, 0, 8, 8]",
                                 "stream.bin=4"])
    inner = compute_config(cfg)
    assert inner.sample.pixel_size == 2.0 and inner.stream.bin == 1 and inner.stream.roi == ()
    assert inner.detector.dose == cfg.detector.dose  # e/Å²: the same electrons per area


class SpyPopout:
    """Records the frame shape and pixel size pop-out was called with (runs in-process)."""

    seen: list = []

    def __call__(self, frame, config, **kwargs):
        SpyPopout.seen.append((np.shape(frame), config.sample.pixel_size))
        return popout_double(frame, config, **kwargs)


def test_a_roi_bin_run_stores_whole_raw_frames_and_binned_roi_volumes(tmp_path):
    frames = hrtem_movie(3, size=96)
    movie = tmp_path / "movie.mrc"
    write_mrc_movie(movie, frames, pixel_size=1.0)
    roi, b = [8, 16, 72, 80], 2
    cfg = config_mod.load(None, [*REAL_SETS, f"stream.roi={roi}", f"stream.bin={b}"])
    SpyPopout.seen = []
    stages = Stages(popout=ViewPopout(SpyPopout()), refiner=ViewRefinerFactory(RefinerDouble))
    out = tmp_path / "run.zarr"
    summary = run_pipeline(FileSource(movie, frame_interval=0.1), out, cfg, stages=stages)
    assert summary.statuses == {"pending": 0, "refined": 3, "skipped": 0, "failed": 0}
    assert summary.shape == (3, 8, 32, 32)
    g = zarr.open_group(out, mode="r")
    assert np.array_equal(np.asarray(g["frames"]), frames)  # raw frames whole, exactly
    assert SpyPopout.seen == [((32, 32), 2.0)] * 3
    view = view_for(cfg, frames.shape[1:])
    for t in range(3):  # each volume comes from its own frame's binned ROI
        want = expected_popout(view.apply(frames[t]), 8)
        assert np.array_equal(np.asarray(g["popout"][t]), want)
    attrs = g.attrs["stream3d"]
    assert attrs["view"] == {"roi": roi, "bin": b, "shape": [32, 32], "pixel_size": 2.0,
                             "origin": [8.0, 16.0]}
    assert attrs["config"]["stream"]["roi"] == roi and attrs["config"]["stream"]["bin"] == b
    assert scale_of(g.attrs["ome"])[2:] == (2.0, 2.0)
    # binned pixel 0's centre is its raw 2 x 2 block's: raw index 8.5 (y), 16.5 (x)
    assert translation_of(g.attrs["ome"]) == (0.0, 0.0, 8.5, 16.5)
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(g)  # the scale + translation pair is valid OME-Zarr 0.5
    run = read_run(out)
    c = run.coords()
    assert c["y"][0] == 8.0 + 1.0 and c["x"][-1] == 16.0 + 31.5 * 2.0  # Å, centres in the frame
    # Resuming with another ROI would mix volumes of two shapes: refused, naming the key.
    other = cfg.replace("stream", roi=[0, 0, 64, 64])
    with pytest.raises(Exception, match=r"recorded with stream.roi=\[8, 16, 72, 80\]"):
        RunStore.open(out, other)


def test_real_stages_reconstruct_a_binned_roi(tmp_path):
    """The real pop-out and refinement accept the binned frames and binned pixel size."""
    frames = hrtem_movie(1, size=96)
    movie = tmp_path / "movie.mrc"
    write_mrc_movie(movie, frames, pixel_size=1.0)
    cfg = config_mod.load(None, [*REAL_SETS, "stream.roi=[0, 32, 64, 96]", "stream.bin=2",
                                 "refine.iterations=1"])
    out = tmp_path / "run.zarr"
    summary = run_pipeline(FileSource(movie, frame_interval=0.1), out, cfg)
    g = zarr.open_group(out, mode="r")
    assert summary.statuses["refined"] == 1
    assert g["frames"].shape == (1, 96, 96) and g["volume"].shape == (1, 8, 32, 32)
    assert int(g["status"][0]) == Status.REFINED and np.isfinite(np.asarray(g["volume"])).all()


def test_cli_refuses_a_roi_beyond_the_movie_in_one_line(tmp_path):
    movie = tmp_path / "movie.mrc"
    write_mrc_movie(movie, hrtem_movie(1, size=64), pixel_size=1.0)
    result = CliRunner().invoke(app, ["reconstruct", str(movie), "--out", str(tmp_path / "r.zarr"),
                                      "--set", "stream.roi=[0, 0, 64, 128]"])
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if "error" in ln]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "stream.roi [0, 0, 64, 128] reaches beyond the 64 x 64 px frame" in errors[0]
    assert not (tmp_path / "r.zarr").exists() or not json.loads(
        (tmp_path / "r.zarr" / "zarr.json").read_text())["attributes"]["stream3d"]["frames"]


def test_a_live_run_whose_roi_misses_the_frames_stops_with_one_clear_error(tmp_path):
    """Live frames' shape is known only when the first arrives: the run stops there, naming
    the key, and leaves a store that a corrected config can use."""
    from stream3d.errors import UserError

    movie = tmp_path / "movie.mrc"
    write_mrc_movie(movie, hrtem_movie(2, size=64), pixel_size=1.0)
    bad = config_mod.load(None, [*REAL_SETS, "stream.roi=[0, 0, 64, 96]"])
    out = tmp_path / "run.zarr"
    stages = Stages(popout=ViewPopout(popout_double), refiner=ViewRefinerFactory(RefinerDouble))
    with pytest.raises(UserError, match=r"stream.roi \[0, 0, 64, 96\] reaches beyond the 64 x 64"):
        run_pipeline(FileSource(movie, frame_interval=0.1), out, bad, stages=stages)
    good = bad.replace("stream", roi=[0, 0, 64, 64])
    summary = run_pipeline(FileSource(movie, frame_interval=0.1), out, good, stages=stages)
    assert summary.statuses["refined"] == 2


def test_truth_comparison_sees_the_truth_through_the_runs_roi_and_bin(tmp_path):
    from stream3d.analysis.truth import as_run_sees, compare_to_truth
    from stream3d.errors import UserError
    from stream3d.store import RawFrame

    nz = 4
    occ = np.zeros((1, nz, 16, 16), np.float32)
    occ[0, 1:3, 6:12, 5:10] = 1.0  # a block of material partly inside the ROI
    truth = zarr.open_group(tmp_path / "truth.zarr", mode="w")
    truth.create_array("occupancy", data=occ)
    truth.create_array("frame_id", data=np.array([0], np.int64))
    cfg = config_mod.load(None, [f"sample.slices={nz}", "stream.roi=[4, 4, 12, 12]",
                                 "stream.bin=2"])
    seen = as_run_sees(occ[0], ((4, 4, 12, 12), 2))
    assert seen.shape == (nz, 4, 4)
    # block means: ROI columns 1..5 hold material, so block 0 is half full, block 3 empty
    assert seen[1, 1, 0] == 0.5 and seen[1, 1, 2] == 1.0 and seen[1, 1, 3] == 0.0
    assert seen[0].max() == 0 and seen[1, 0, 1] == 0.0 and seen[1, 3, 1] == 1.0  # rows 2..7
    store = RunStore.open(tmp_path / "run.zarr", cfg)
    store.append([RawFrame("s", 0, 0.0, np.full((16, 16), 100, np.uint16))])
    volume = (seen >= 0.5) * np.float32(cfg.sample.potential)
    store.write_result(0, status=Status.REFINED, popout=volume, volume=volume, loss=0.0)
    store.close()
    (row,) = compare_to_truth(tmp_path / "run.zarr", tmp_path / "truth.zarr")
    assert row.refined_iou == 1.0 and row.refined_depth == 0.0
    # A run of another movie (or a truth of other frames): one clear error, not a crash.
    other = zarr.open_group(tmp_path / "other.zarr", mode="w")
    other.create_array("occupancy", data=np.zeros((1, nz, 8, 8), np.float32))
    other.create_array("frame_id", data=np.array([0], np.int64))
    with pytest.raises(UserError, match="not the movie of this run"):
        compare_to_truth(tmp_path / "run.zarr", tmp_path / "other.zarr")


def test_object_centroids_are_placed_in_the_whole_frame():
    from stream3d.analysis.objects import frame_objects

    volume = np.zeros((4, 16, 16), np.float32)
    volume[1:3, 4:8, 6:10] = 5.0  # centre at pixel (5.5, 7.5) + 0.5 -> (6, 8) x 2 Å
    plain = frame_objects(volume, frame=0, t=0.0, sampling=(20.0, 2.0, 2.0), level=5.0)
    moved = frame_objects(volume, frame=0, t=0.0, sampling=(20.0, 2.0, 2.0), level=5.0,
                          origin=(8.0, 16.0))
    (a,), (b,) = plain.rows, moved.rows
    assert a.centroid_y_nm == pytest.approx(1.2) and a.centroid_x_nm == pytest.approx(1.6)
    assert b.centroid_y_nm == pytest.approx(1.2 + 0.8) and b.centroid_x_nm == pytest.approx(3.2)
    assert b.volume_nm3 == a.volume_nm3 and b.centroid_z_nm == a.centroid_z_nm
