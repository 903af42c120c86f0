"""Warm starts on a 10-frame growing-dendrite movie, judged against the ground truth."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from warm_start import movie_config, run_movie, summary  # noqa: E402

from stream3d.popout import PopoutResult  # noqa: E402
from stream3d.refine import Refiner  # noqa: E402
from stream3d.simulate import simulate_frame  # noqa: E402
from stream3d.specimen import three_discs  # noqa: E402


def test_warm_starts_are_no_worse_than_cold_on_a_growing_dendrite():
    """The warm start averages the previous frames' heights with pop-out's: on a growing
    dendrite its depth error is no worse than cold starts' and it does not drift."""
    config = movie_config(96, 16, ["refine.device=cpu", "refine.iterations=8"])
    rows = run_movie(config, 8, report=lambda line: None)
    m = summary(rows)
    assert not rows[0]["warm"] and m["frames"] >= 6  # growth is not a scene change
    assert m["warm_depth"] <= m["cold_depth"] + 1.0, m
    assert m["warm_iou"] >= m["cold_iou"] - 0.02, m
    late = [r["warm_depth"] - r["cold_depth"] for r in rows[-3:]]
    assert max(late) <= 5.0, rows  # no error piling up over the movie


def _popout_of(volume: np.ndarray) -> PopoutResult:
    flat = np.zeros(volume.shape[1:], np.float32)
    return PopoutResult(volume=volume, height=flat, thickness=flat, confidence=flat, message="")


def test_a_new_scene_starts_cold_and_reset_forgets():
    config = movie_config(64, 8, ["refine.device=cpu", "refine.iterations=8"])
    s = config.sample
    first = three_discs((8, 64, 64), s.sampling, heights=(40.0, 80.0, 120.0), thickness=40.0)
    other = three_discs((8, 64, 64), s.sampling, heights=(120.0, 40.0, 80.0), thickness=40.0)
    other = np.roll(other, 20, axis=2)
    frames = [simulate_frame(o, config, seed=i)[0] for i, o in enumerate((first, first, other))]
    refiner = Refiner(config)
    results = [refiner.refine(f, _popout_of(o * s.potential))
               for f, o in zip(frames, (first, first, other))]
    assert [r.warm for r in results] == [False, True, False]
    refiner.reset()
    assert not refiner.refine(frames[0], _popout_of(first * s.potential)).warm
    with pytest.raises(ValueError, match="does not match the frame"):
        refiner.refine(frames[0][:32], _popout_of(first * s.potential))


def test_zero_iterations_returns_pop_out_even_with_a_uniform_init():
    config = movie_config(64, 8, ["refine.device=cpu", "refine.iterations=0",
                                  "refine.init=uniform"])
    occ = three_discs((8, 64, 64), config.sample.sampling, heights=(40.0, 80.0, 120.0),
                      thickness=40.0)
    frame = simulate_frame(occ, config, seed=0)[0]
    volume = (occ * config.sample.potential).astype(np.float32)
    result = Refiner(config).refine(frame, _popout_of(volume))
    assert result.status == "popout-only" and result.iterations == 0
    np.testing.assert_array_equal(result.volume, volume)


def test_the_warm_start_weighs_the_previous_frames_heights_by_warm_blend():
    # Issue 20: a warm start that ignored the previous frame (blend 0) failed no test. A disc
    # whose previous refined height was 300 Å and whose new pop-out says 360 Å starts at
    # blend x 300 + (1 - blend) x 360; new growth (columns the previous frame lacked) keeps
    # pop-out's height.
    from stream3d.refine.slabs import column_slabs
    from stream3d.refine.warmstart import merged_start
    from stream3d.specimen import Disc, discs

    shape, sampling, potential = (32, 64, 64), (20.0, 1.0, 1.0), 5.0
    previous = discs(shape, sampling, [Disc(32, 32, 15, 300.0, 60.0)]) * potential
    popout = discs(shape, sampling, [Disc(32, 32, 20, 360.0, 60.0)]) * potential
    changed = np.zeros((64, 64), bool)
    for blend in (0.25, 0.5):
        start = merged_start(previous, popout, changed, potential=potential, dz=20.0,
                             blend=blend)
        centre = column_slabs(start, potential=potential, dz=20.0).centre[0]
        pop_centre = column_slabs(popout, potential=potential, dz=20.0).centre[0]
        prev_centre = column_slabs(previous, potential=potential, dz=20.0).centre[0]
        assert centre[32, 32] == pytest.approx(blend * prev_centre[32, 32]
                                               + (1 - blend) * pop_centre[32, 32], abs=0.01)
        assert centre[32, 32] < pop_centre[32, 32] - 10.0  # the previous frame counts
        assert centre[32, 50] == pytest.approx(pop_centre[32, 50])  # growth: pop-out's
