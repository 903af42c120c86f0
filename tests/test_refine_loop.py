"""The optimiser loop's stopping rules and the refinement's handling of bad input."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.refine import refine_volume
from stream3d.refine.measurement import uniform_volume
from stream3d.refine.model import ImagingModel
from stream3d.simulate import simulate_frame
from stream3d.specimen import three_discs


@pytest.fixture(scope="module")
def small():
    cfg = Config().replace("sample", slices=8).replace("refine", device="cpu", iterations=6)
    occ = three_discs((8, 48, 48), cfg.sample.sampling, heights=(40.0, 80.0, 120.0),
                      thickness=40.0)
    frame, potential = simulate_frame(occ, cfg, seed=3)
    return cfg, frame, potential.real, occ


def test_bad_input_is_one_clear_error(small):
    cfg, frame, volume, _ = small
    with pytest.raises(UserError, match="does not match the frame"):
        refine_volume(frame, volume[:, :40], cfg)
    with pytest.raises(UserError, match="slices"):
        refine_volume(frame, volume[:4], cfg)
    holed = frame.copy()
    holed[3, 4] = np.nan
    with pytest.raises(UserError, match="NaN"):
        refine_volume(holed, volume, cfg)
    with pytest.raises(UserError, match="negative"):
        refine_volume(frame - 1e6, volume, cfg)
    with pytest.raises(UserError, match="2D"):
        refine_volume(frame[None], volume, cfg)
    bad = volume.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(UserError, match="NaN or infinite"):
        refine_volume(frame, bad, cfg)


def test_nan_during_refinement_returns_the_best_volume_with_status_nan(small):
    cfg, frame, volume, _ = small

    def poison(stage, iteration, state):
        if stage == "fit" and iteration == 2:
            with torch.no_grad():
                state.change[5, 5] = float("nan")

    result = refine_volume(frame, volume, cfg, callback=poison)
    assert result.status == "nan"
    assert np.isfinite(result.volume).all() and result.volume.shape == volume.shape


def test_zero_iterations_is_pop_out_only(small):
    cfg, frame, volume, _ = small
    result = refine_volume(frame, volume, cfg.replace("refine", iterations=0))
    assert result.status == "popout-only" and result.iterations == 0
    np.testing.assert_array_equal(result.volume, volume.astype(np.float32))
    assert result.loss > 0 and result.loss_history == [result.loss]


def test_uniform_start_spreads_the_mean_projected_potential(small):
    cfg, frame, _, occ = small
    model = ImagingModel.from_config(cfg)
    start = uniform_volume(frame, model, cfg.sample.slices)
    assert start.shape == occ.shape and np.ptp(start) == 0
    # Projected potential from absorption, within 30 % of the truth's mean (texture and
    # aperture losses add a little apparent absorption).
    true_mean = occ.sum(0).mean() * cfg.sample.potential
    assert start.sum(0).mean() == pytest.approx(true_mean, rel=0.3)


def test_vacuum_frame_reconstructs_to_an_empty_volume_not_a_failure():
    """A frame with no material (the first seconds of an experiment) gives an empty volume and
    a message, and a uniform start on it still refines (no IndexError on empty regions)."""
    import numpy as np
    from stream3d.config import Config
    from stream3d.popout import popout
    from stream3d.refine import Refiner

    config = Config().replace("refine", iterations=6).replace("popout", patch=32, step=8)
    frame = np.random.default_rng(0).poisson(2000.0, (64, 64)).astype(np.float32)
    pop = popout(frame, config)
    assert not (pop.thickness > 0).any()
    result = Refiner(config).refine(frame, pop)
    assert result.status == "empty" and "no material" in result.message
    assert result.volume.shape == (config.sample.slices, 64, 64) and not result.volume.any()
    uniform = Refiner(config.replace("refine", init="uniform")).refine(frame, pop)
    assert uniform.status in ("noise-level", "plateau", "max-iterations")
    assert np.isfinite(uniform.volume).all()
