"""The optimiser loop's stopping rules and the refinement's handling of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.refine import refine_volume
from stream3d.refine.optimise import StopRules, optimise
from stream3d.refine.parameterisations import BoundedVoxels
from stream3d.refine.measurement import uniform_volume
from stream3d.refine.model import ImagingModel
from stream3d.simulate import simulate_frame
from stream3d.specimen import three_discs


def _toy(target: float = 3.0) -> tuple[BoundedVoxels, callable]:
    """Voxels fitted to a constant: the loss is the mean squared distance to ``target`` V."""
    param = BoundedVoxels(torch.zeros(2, 3, 3), potential=5.0, dz=20.0, max_potential=10.0)

    def objective(volume):
        data = (volume - target).square().mean()
        return data, data

    return param, objective


def _groups(param, lr):
    return [{"params": param.parameters(), "lr": lr}]


def test_stops_at_the_noise_level_not_below_it():
    param, objective = _toy()
    report = optimise(param, _groups(param, 0.1), objective, decay=1.0,
                      rules=StopRules(max_iterations=500, noise_level=1.0))
    assert report.status == "noise-level"
    assert report.best_loss <= 1.0 and report.loss_history[-2] > 1.0
    assert float(param.volume().detach().mean()) == pytest.approx(2.0, abs=0.15)  # loss 1 at V = 2


def test_plateau_and_budget_and_best_state():
    param, objective = _toy()
    report = optimise(param, _groups(param, 0.5), objective, decay=0.5,
                      rules=StopRules(max_iterations=100))
    assert report.status == "plateau" and report.iterations < 100
    param, objective = _toy()
    report = optimise(param, _groups(param, 0.01), objective, decay=1.0,
                      rules=StopRules(max_iterations=7))
    assert report.status == "max-iterations" and report.iterations == 7
    assert len(report.loss_history) == 8  # the start and every step
    assert report.best_loss == pytest.approx(min(report.loss_history))


def test_nan_in_the_loss_keeps_the_best_volume():
    param, objective = _toy()
    calls = {"n": 0}

    def poisoned(volume):
        calls["n"] += 1
        data, total = objective(volume)
        return (data * math.nan, total * math.nan) if calls["n"] > 4 else (data, total)

    report = optimise(param, _groups(param, 0.1), poisoned, decay=1.0,
                      rules=StopRules(max_iterations=50))
    assert report.status == "nan" and report.iterations == 4
    assert torch.isfinite(param.volume()).all()
    assert float((param.volume().detach() - 3.0).square().mean()) == pytest.approx(report.best_loss)


def test_a_diverging_step_is_detected_and_undone():
    param = BoundedVoxels(torch.full((1, 2, 2), 1.0), potential=5.0, dz=20.0, max_potential=1e6)

    def objective(volume):  # minimum at 1 V, explodes away from it
        data = torch.exp(0.1 * (volume - 1.0).abs()).mean() - 1.0 + (volume - 1.2).square().mean()
        return data, data

    report = optimise(param, _groups(param, 50.0), objective, decay=1.0,
                      rules=StopRules(max_iterations=20, divergence=10.0))
    assert report.status == "diverged"
    assert float(param.volume().detach().max()) < 2.0  # the best state, not the runaway step


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

    def poison(stage, iteration, param):
        if stage == "support" and iteration == 2:
            with torch.no_grad():
                param.thickness[5, 5] = float("nan")

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
