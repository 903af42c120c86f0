"""In situ movies (issue 23): registration against the first frame, the warm start moved by
the drift, a new scene beyond stream.max_shift, and the lens defocus tracked per frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from stream3d import config as config_mod
from stream3d.movie import simulate_movie
from stream3d.io.movies import open_movie
from stream3d.register import Registration, moved
from stream3d.store import Status
from stream3d.stream import FileSource, run_pipeline
from stream3d.stream.compute import Stages
from stream3d.stream.pipeline import Snapshot
from stream3d.stream.status import status_text
from stream_helpers import REAL_SETS, popout_double

#: A 96 px movie of discs that drifts 3.3 Å/frame at 30° with 1 Å rms jitter.
DRIFT_SETS = [*REAL_SETS, "simulate.frames=6", "simulate.ny=96", "simulate.nx=96",
              "simulate.specimen=discs", "simulate.depth_low=60", "simulate.depth_high=300",
              "simulate.drift=3.3", "simulate.drift_angle=30", "simulate.jitter=1.0",
              "simulate.seed=4"]


def _simulated(tmp_path_factory, name: str, sets: list[str]):
    """(config, movie path, truth group) of a movie simulated with ``sets``."""
    cfg = config_mod.load(None, sets)
    files = simulate_movie(cfg, tmp_path_factory.mktemp(name), progress=False)
    return cfg, files.movie, zarr.open_group(str(files.truth), mode="r")


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    """(movie path, config, true drift (t, 2) Å against frame 0)."""
    cfg, movie, truth = _simulated(tmp_path_factory, "drift", DRIFT_SETS)
    shift = np.asarray(truth["shift"][:])
    return movie, cfg, shift - shift[0]


def test_phase_correlation_measures_the_simulated_drift_within_a_tenth_of_a_pixel(drifting):
    path, cfg, truth = drifting
    movie = open_movie(path)
    frames = [np.asarray(movie[i], np.float32) for i in range(len(movie))]
    registration = Registration.from_config(frames[0], cfg)
    measured = np.array([registration.shift(f) for f in frames])
    error_px = np.abs(measured - truth).max() / cfg.sample.pixel_size
    assert error_px < 0.1, (measured, truth)
    assert np.abs(truth[-1]).max() > 10  # the movie did drift (> 10 px)


def test_moved_shifts_whole_pixels_without_wrapping():
    a = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    b = moved(a, (1, -2), fill=-1)
    assert (b[:, 1:, :3] == a[:, :3, 2:]).all()
    assert (b[:, 0] == -1).all() and (b[:, :, 3:] == -1).all()
    assert (moved(a, (9, 0)) == 0).all()


class SpyRefiner:
    """Records what the pipeline asks of the warm state: moves (px), resets, configs."""

    log: list = []

    def __init__(self, config, device=None) -> None:
        self.previous = None
        type(self).log = []

    def move(self, step):
        type(self).log.append(("move", tuple(step)))

    def reset(self):
        type(self).log.append(("reset",))

    def use_config(self, config):
        type(self).log.append(("config", config.microscope.defocus))

    def refine(self, frame, popout):
        from stream_helpers import RefineDouble

        return RefineDouble(popout.volume, 0.0, [], 1, 0.0, "converged", False)


SPY = Stages(popout=popout_double, refiner=SpyRefiner)


def _replay(path, cfg, out, stages=None):
    summary = run_pipeline(FileSource(path, frame_interval=0.1), out, cfg, stages=stages)
    group = zarr.open_group(str(out), mode="r")
    return summary, group


def test_the_stored_shift_is_the_true_drift_and_the_warm_start_follows_it(drifting, tmp_path):
    path, cfg, truth = drifting
    summary, group = _replay(path, cfg, tmp_path / "run.zarr", SPY)
    assert summary.statuses["refined"] == len(truth)
    shift = np.asarray(group["shift"][:])
    assert shift.dtype == np.float32 and shift.shape == (len(truth), 2)
    assert np.abs(shift - truth).max() / cfg.sample.pixel_size < 0.5
    moves = [entry[1] for entry in SpyRefiner.log if entry[0] == "move"]
    assert len(moves) == len(truth) - 1 and ("reset",) not in SpyRefiner.log
    # The warm state sits where the specimen is: the moves add up to the last frame's drift.
    assert np.allclose(np.sum(moves, axis=0), np.round(shift[-1] / cfg.sample.pixel_size))
    assert np.isnan(group["defocus"][:]).all()  # lens not tracked


def test_registration_switched_off_stores_no_shift_and_never_moves_the_warm_start(
        drifting, tmp_path):
    path, cfg, _ = drifting
    _, group = _replay(path, cfg.replace("stream", register=False), tmp_path / "run.zarr", SPY)
    assert np.isnan(group["shift"][:]).all()
    assert not [e for e in SpyRefiner.log if e[0] in ("move", "reset")]


def test_a_jump_beyond_max_shift_starts_a_new_scene(drifting, tmp_path):
    path, cfg, truth = drifting
    steps = np.hypot(*np.diff(truth, axis=0).T)
    limit = float(np.median(steps))  # about half the steps are jumps
    _replay(path, cfg.replace("stream", max_shift=limit), tmp_path / "run.zarr", SPY)
    resets = sum(1 for e in SpyRefiner.log if e == ("reset",))
    assert resets == int((steps > limit).sum()) and resets > 0


def test_the_real_stages_store_the_shift_and_the_refiner_moves_its_state(drifting, tmp_path):
    path, cfg, truth = drifting
    cfg = cfg.replace("refine", iterations=2)
    summary, group = _replay(path, cfg, tmp_path / "run.zarr")
    assert summary.statuses["refined"] == len(truth)
    assert np.abs(group["shift"][:] - truth).max() < 0.5 * cfg.sample.pixel_size
    # The refiner's own move: its previous volume and loss maps follow the specimen.
    from stream3d.popout import popout
    from stream3d.refine import Refiner

    frame = np.asarray(open_movie(path)[0], np.float32)
    refiner = Refiner(cfg, "cpu")
    refiner.refine(frame, popout(frame, cfg))
    before, loss_map = refiner.previous.copy(), refiner.references[0].copy()
    assert before.any()
    refiner.move((2, -3))
    assert np.array_equal(refiner.previous, moved(before, (2, -3)))
    assert np.array_equal(refiner.references[0][2:, :-3], loss_map[:-2, 3:])


def test_the_status_line_shows_drift_and_defocus():
    snap = Snapshot(received=3, malformed=0, gaps=0, duplicates=0, reconstructed=3, skipped=0,
                    failed=0, lag=0, ingest_fps=1.0, recon_fps=1.0, idle_s=0.0, elapsed_s=1.0,
                    stored=3, shift=(1.25, -3.5), defocus=2012.0)
    text = status_text(snap)
    assert "drift +1.2,-3.5 Å" in text and "defocus 2012 Å" in text


#: 128 px discs at three heights whose lens defocus drifts 40 Å per frame (200 Å by frame 5).
FOCUS_SETS = ["simulate.frames=6", "simulate.ny=128", "simulate.nx=128", "sample.slices=16",
              "sample.slice_thickness=40", "simulate.specimen=discs",
              "simulate.defocus_drift=40", "refine.device=cpu", "refine.iterations=0",
              "stream.window=2"]


@pytest.fixture(scope="module")
def defocus_drifting(tmp_path_factory):
    """(movie path, config, true occupancy (t, z, y, x), true lens defocus (t,) Å)."""
    cfg, movie, truth = _simulated(tmp_path_factory, "focus", FOCUS_SETS)
    lens = cfg.microscope.defocus + 40.0 * np.arange(cfg.simulate.frames)
    return movie, cfg, np.asarray(truth["occupancy"][:]), lens


def _last_height_error(group, occupancy, cfg):
    from stream3d.analysis.accuracy import height_error

    volume = np.asarray(group["volume"][-1])
    return height_error(volume, occupancy[-1], potential=cfg.sample.potential,
                        dz=cfg.sample.slice_thickness)


def test_tracked_defocus_keeps_the_heights_of_a_movie_whose_focus_drifts(defocus_drifting,
                                                                          tmp_path):
    """Pop-out at each frame's tracked lens: the last frame's heights stay within the suite's
    accuracy; at the nominal defocus they are off by about the 200 Å the lens drifted."""
    path, cfg, occupancy, lens = defocus_drifting
    _, tracked = _replay(path, cfg.replace("microscope", track_defocus=True),
                         tmp_path / "tracked.zarr")
    _, nominal = _replay(path, cfg, tmp_path / "nominal.zarr")
    stored = np.asarray(tracked["defocus"][:])
    assert stored.dtype == np.float32 and stored[0] == cfg.microscope.defocus
    assert np.abs(stored - lens).max() < 40.0, stored  # Å
    assert np.isnan(nominal["defocus"][:]).all()
    with_tracking = _last_height_error(tracked, occupancy, cfg)
    without = _last_height_error(nominal, occupancy, cfg)
    assert with_tracking < 50.0, with_tracking  # Å (measured 37 Å)
    assert without > 2 * with_tracking and without > 100.0, without  # (measured 165 Å)


def test_the_refiner_is_given_each_frames_tracked_lens(defocus_drifting, tmp_path):
    path, cfg, _, lens = defocus_drifting
    _, group = _replay(path, cfg.replace("microscope", track_defocus=True),
                       tmp_path / "run.zarr", SPY)
    given = [e[1] for e in SpyRefiner.log if e[0] == "config"]
    np.testing.assert_allclose(given, group["defocus"][:], atol=1e-3)
    assert given[-1] - given[0] > 150.0  # it followed the drift (200 Å)


def test_a_frame_without_finite_pixels_has_an_unknown_shift_not_an_error():
    rng = np.random.default_rng(0)
    frame = rng.poisson(2000, (64, 64)).astype(np.float32)
    registration = Registration.from_config(frame, config_mod.load(None, REAL_SETS))
    bad = frame.copy()
    bad[3, 3] = np.nan
    assert all(math.isnan(v) for v in registration.shift(bad))
    assert all(math.isnan(v) for v in registration.shift(frame[:32]))
    blank = Registration.from_config(np.full((64, 64), np.nan, np.float32),
                                     config_mod.load(None, REAL_SETS))
    assert all(math.isnan(v) for v in blank.shift(frame))


def test_a_correlation_that_only_noise_makes_is_an_unknown_shift_not_a_guess():
    # Two frames of shot noise over no specimen share nothing: the peak of their correlation is
    # the largest of many noise values, and its place is a guess (on an MTF-blurred in situ
    # movie such guesses landed 122 px away). A drifted copy of a textured frame is found.
    rng = np.random.default_rng(1)
    cfg = config_mod.load(None, REAL_SETS)
    texture = 1.0 + 0.05 * rng.standard_normal((96, 96))
    reference = rng.poisson(2000 * texture).astype(np.float32)
    registration = Registration.from_config(reference, cfg)
    noise = rng.poisson(2000, (96, 96)).astype(np.float32)
    assert all(math.isnan(v) for v in registration.shift(noise))
    drifted = rng.poisson(2000 * np.roll(texture, (3, -5), axis=(0, 1))).astype(np.float32)
    dy, dx = registration.shift(drifted)
    pixel = cfg.sample.pixel_size
    assert abs(dy / pixel - 3) < 0.1 and abs(dx / pixel + 5) < 0.1


#: 256 px growing discs over a 100 Å membrane (5 V), the lens fixed: only the objects change.
MEMBRANE_SETS = ["simulate.frames=6", "simulate.ny=256", "simulate.nx=256", "sample.slices=16",
                 "sample.slice_thickness=40", "simulate.specimen=growing_discs",
                 "simulate.growth=8", "refine.device=cpu",
                 "sample.membranes=[{material = 5.0, height = 50.0, thickness = 100.0}]"]


def test_lens_tracking_over_a_membrane_is_not_moved_by_growing_objects(tmp_path_factory):
    """Over a support membrane the tracker fits its bare areas, whose rings move only with the
    lens: growing discs leave the tracked lens within 10 Å of the fixed one (measured 5.5 Å).
    The whole field's mixed rings follow the discs' growing share (measured -35 Å by frame 5)."""
    from stream3d.stream.insitu import InSitu

    cfg, movie, _ = _simulated(tmp_path_factory, "membrane", MEMBRANE_SETS)
    frames = [np.asarray(f, np.float32) for f in open_movie(movie)]
    tracked = cfg.replace("microscope", track_defocus=True).replace("stream", register=False)

    def lens(config):
        insitu = InSitu(config, None, lambda: frames[0], lambda: "key")
        return np.array([insitu.plan(t, f).defocus for t, f in enumerate(frames)])

    error = lens(tracked) - cfg.microscope.defocus
    assert np.abs(error).max() < 10.0, error  # Å
    whole = lens(tracked.replace("sample", membranes=[])) - cfg.microscope.defocus
    assert np.abs(whole).max() > 25.0, whole
