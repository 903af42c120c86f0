"""Refinement building blocks with exact answers: slabs, z moves, regions, losses, TV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream3d.refine.losses import l2_map, loss_map, poisson_map
from stream3d.refine.regularisers import total_variation
from stream3d.refine.zgeometry import column_centre, shift_scale_z, slab_occupancy
from stream3d.specimen import column_thickness, slab_profile

DZ = 20.0


def test_slab_occupancy_matches_the_specimen_geometry_exactly():
    height = torch.tensor([[200.0, 130.0, 47.0]])
    thickness = torch.tensor([[70.0, 45.0, 13.0]])
    occ = slab_occupancy(height, thickness, 16, DZ).numpy()
    ref = slab_profile(16, DZ, (height - thickness / 2).numpy(), (height + thickness / 2).numpy())
    np.testing.assert_allclose(occ, ref, atol=1e-6)
    np.testing.assert_allclose(column_thickness(occ, DZ), thickness.numpy(), atol=1e-4)


def test_shift_scale_z_keeps_mass_and_moves_the_centre_exactly():
    height = torch.tensor([[200.0, 130.0]])
    thickness = torch.tensor([[70.0, 45.0]])
    occ = slab_occupancy(height, thickness, 16, DZ)
    moved = shift_scale_z(occ, shift=13.0, scale=1.0, centre=height, dz=DZ)
    np.testing.assert_allclose(moved.sum(0).numpy(), occ.sum(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(column_centre(moved, DZ).numpy(), height.numpy() + 13.0, atol=1e-3)
    # A whole number of slices is an exact translation; scale multiplies the thickness.
    by_slice = shift_scale_z(occ, shift=40.0, scale=1.0, centre=0.0, dz=DZ)
    expected = slab_occupancy(height + 40, thickness, 16, DZ).numpy()
    np.testing.assert_allclose(by_slice.numpy(), expected, atol=1e-6)
    stretched = shift_scale_z(occ, shift=0.0, scale=1.5, centre=height, dz=DZ)
    np.testing.assert_allclose(stretched.sum(0).numpy() * DZ, 1.5 * thickness.numpy(), rtol=1e-5)
    identity = shift_scale_z(occ, shift=0.0, scale=1.0, centre=100.0, dz=DZ)
    assert torch.equal(identity, occ)


def test_losses_at_the_truth_are_the_poisson_expectations():
    rng = np.random.default_rng(0)
    counts_per_unit = 500.0
    intensity = torch.as_tensor(rng.uniform(0.8, 1.2, (256, 256)))
    measured = torch.as_tensor(rng.poisson(intensity.numpy() * counts_per_unit) / counts_per_unit)
    l2 = float(l2_map(intensity, measured, counts_per_unit).mean())
    assert l2 == pytest.approx(float(intensity.mean()) / counts_per_unit, rel=0.02)
    deviance = float(poisson_map(intensity, measured, counts_per_unit).mean())
    assert deviance == pytest.approx(1.0, abs=0.03)
    assert float(poisson_map(measured, measured, counts_per_unit).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="unknown loss"):
        loss_map("l1")


def test_total_variation_counts_lateral_and_axial_steps_separately():
    v = torch.zeros(4, 6, 6)
    v[1:3, 2:4, 2:4] = 5.0
    lateral = total_variation(v, lateral=1.0, axial=0.0)
    axial = total_variation(v, lateral=0.0, axial=1.0)
    # 2 slices x (2 rows x 2 edges) steps of 5 V, along y and along x.
    assert float(lateral) == pytest.approx(2 * 5.0 * 8 / (4 * 5 * 6))
    assert float(axial) == pytest.approx(5.0 * 8 / (3 * 6 * 6))
    assert float(total_variation(v, lateral=2.0, axial=3.0)) == pytest.approx(
        2 * float(lateral) + 3 * float(axial))


def test_total_variation_over_the_material_columns_equals_the_whole_volumes():
    # The refinement sums the steps touching its material columns only: same value (and so the
    # same gradient) as the whole volume's, including steps to empty neighbours and frame edges.
    rng = np.random.default_rng(0)
    v = torch.zeros(6, 30, 40, dtype=torch.float64)
    v[:, 4:17, 9:25] = torch.as_tensor(rng.random((6, 13, 16)))
    v[:, 29, 39] = 1.0  # a corner column
    columns = torch.nonzero((v != 0).any(dim=0).flatten()).flatten()
    whole = total_variation(v, lateral=1.5, axial=0.5)
    part = total_variation(v, lateral=1.5, axial=0.5, columns=columns)
    assert float(part) == pytest.approx(float(whole), rel=1e-12)
    # A column left out of ``columns`` is not counted: the argument is used, not ignored.
    fewer = total_variation(v, lateral=1.5, axial=0.5, columns=columns[:-1])
    assert float(fewer) < float(whole) - 1e-3
