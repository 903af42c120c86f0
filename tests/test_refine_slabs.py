"""The refinement's shape (up to two slabs per column) and what its AD fit does to a start
that is too wide, against the simulated truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream3d.analysis.accuracy import height_error, thickness_error
from stream3d.config import Config
from stream3d.refine import refine_volume
from stream3d.refine.pipeline import keep_significant
from stream3d.refine.slabs import LAYERS, column_slabs, slab_volume
from stream3d.simulate import simulate_frame
from stream3d.specimen import slab_profile, two_layers
from stream3d.specimen.shapes import Disc, discs


def test_two_slabs_per_column_round_trip_exactly():
    nz, dz, v0 = 16, 20.0, 5.0
    occ = two_layers((nz, 24, 40), (dz, 1.0, 1.0), heights=(70.0, 230.0), thickness=50.0)
    slabs = column_slabs(occ * v0, potential=v0, dz=dz)
    shared = (occ.sum(axis=0) * dz > 90)  # columns holding both layers
    np.testing.assert_allclose(slabs.centre[0][shared], 230.0, atol=1e-9)  # the top one first
    np.testing.assert_allclose(slabs.centre[1][shared], 70.0, atol=1e-9)
    np.testing.assert_allclose(slabs.thickness[:, shared], 50.0, atol=1e-9)
    back = slab_volume(torch.as_tensor(slabs.centre), torch.as_tensor(slabs.thickness), nz=nz,
                       dz=dz, potential=v0)
    np.testing.assert_allclose(back.numpy(), occ * v0, atol=1e-5)


def test_slab_volume_is_differentiable_in_thickness_and_keeps_the_projection():
    nz, dz = 8, 20.0
    centre = torch.tensor([[[70.0]], [[float("nan")]]], dtype=torch.float64)
    thickness = torch.tensor([[[33.0]], [[0.0]]], dtype=torch.float64, requires_grad=True)
    volume = slab_volume(centre, thickness, nz=nz, dz=dz, potential=5.0)
    assert float(volume.sum() * dz / 5.0) == pytest.approx(33.0)
    expected = slab_profile(nz, dz, 70.0 - 16.5, 70.0 + 16.5)[:, None, None] * 5.0
    np.testing.assert_allclose(volume.detach().numpy(), expected, atol=1e-6)
    volume.sum().backward()
    assert thickness.grad[0, 0, 0] == pytest.approx(5.0 / dz)  # V per Å of thickness, per slice


@pytest.mark.parametrize("start_thickness", [40.0, 120.0])
def test_thickness_moves_toward_the_truth_from_either_side_with_footprint_and_heights_held(
        start_thickness):
    """A disc 80 Å thick started too thin or too thick: the fit corrects the thickness (the
    phase contrast and the edge fringes say how much material there is), keeps every start
    column (it never removes one) and does not move heights."""
    cfg = Config().replace("sample", slices=16, slice_thickness=40.0, absorption=0.0) \
        .replace("refine", device="cpu")
    shape, s = (16, 96, 96), cfg.sample
    truth = discs(shape, s.sampling, [Disc(48.0, 48.0, 22.0, 300.0, 80.0)])
    frame, _ = simulate_frame(truth, cfg, seed=4)
    start = discs(shape, s.sampling, [Disc(48.0, 48.0, 22.0, 300.0, start_thickness)]) \
        * s.potential
    result = refine_volume(frame, start, cfg)
    kw = dict(potential=s.potential, dz=s.slice_thickness)
    before, after = thickness_error(start, truth, **kw), thickness_error(result.volume, truth, **kw)
    assert after < 0.8 * before, (before, after)
    assert np.array_equal(result.volume.sum(axis=0) > 0, start.sum(axis=0) > 0)
    assert height_error(result.volume, truth, **kw) == pytest.approx(
        height_error(start, truth, **kw), abs=1.0)


def test_an_insignificant_change_keeps_the_start():
    start = torch.zeros(2, 20, 20)
    start[:, 2:6, 2:6] = 5.0
    start[:, 12:18, 12:18] = 5.0
    refined = start.clone()
    refined[:, 2:6, 2:4] = 0.0  # object 1 changed a lot, object 2 a little
    refined[:, 12:18, 12] = 0.0
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(20, 20, generator=gen) * 1e-3

    def residual(volume):  # object 1's change explains the data, object 2's does not
        loss = noise.clone() + 1.0
        if volume[0, 2, 2] == 0:
            loss[:10, :10] -= 0.5
        return loss

    out, kept = keep_significant(residual, start, refined, pad=2, z=2.0)
    assert kept == 1
    assert torch.equal(out[:, 2:6, 2:6], refined[:, 2:6, 2:6])
    assert torch.equal(out[:, 12:18, 12:18], start[:, 12:18, 12:18])


def test_slab_volume_on_its_material_columns_only_is_the_whole_computation():
    # The refinement builds slabs on the start's material columns only (the coverage of every
    # slice costs more than the multislice pass on a whole frame): same volume, same gradient on them.
    rng = np.random.default_rng(1)
    centre = torch.full((LAYERS, 12, 14), float("nan"), dtype=torch.float64)
    thickness = torch.zeros((LAYERS, 12, 14), dtype=torch.float64)
    centre[0, 2:8, 3:9] = torch.as_tensor(rng.uniform(60, 200, (6, 6)))
    thickness[0, 2:8, 3:9] = torch.as_tensor(rng.uniform(10, 80, (6, 6)))
    centre[1, 4:6, 4:6], thickness[1, 4:6, 4:6] = 40.0, 30.0
    columns = torch.nonzero(thickness.sum(dim=0).flatten() > 0).flatten()
    grads = []
    for cols in (None, columns):
        t = thickness.clone().requires_grad_(True)
        v = slab_volume(centre, t, nz=16, dz=20.0, potential=5.0, columns=cols)
        (v * torch.linspace(0, 1, v.numel(), dtype=v.dtype).reshape(v.shape)).sum().backward()
        grads.append((v.detach(), t.grad))
    on = (thickness.sum(dim=0) > 0)[None].expand_as(thickness)
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.allclose(grads[0][1][on], grads[1][1][on])
    # Elsewhere no gradient: an empty column cannot grow (the column fit masks it anyway).
    assert float(grads[1][1][~on].abs().sum()) == 0.0
    # Thickness outside ``columns`` is ignored: the argument is used.
    outside = slab_volume(centre, thickness + 10.0, nz=16, dz=20.0, potential=5.0,
                          columns=columns)
    assert float(outside.reshape(16, -1)[:, 0].abs().sum()) == 0.0
