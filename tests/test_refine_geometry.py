"""Refinement building blocks with exact answers: slabs, z moves, regions, losses, TV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream3d.refine.losses import l2_map, loss_map, poisson_map
from stream3d.refine.parameterisations import BoundedVoxels, ColumnMove, SlabColumns
from stream3d.refine.regions import (
    Regions, colour_groups, find_regions, height_components, inherit, tile, windows,
)
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


def test_slab_and_voxel_parameterisations_move_columns_alike():
    occ = slab_occupancy(torch.full((4, 5), 150.0), torch.full((4, 5), 60.0), 16, DZ) * 5.0
    slabs = SlabColumns.from_volume(occ, potential=5.0, dz=DZ)
    voxels = BoundedVoxels.from_volume(occ, potential=5.0, dz=DZ, max_potential=1.5)
    move = ColumnMove(shift=40.0, stretch=1.0, thickness=1.0, centre=0.0)
    np.testing.assert_allclose(slabs.moved(move).detach().numpy(), voxels.moved(move).numpy(),
                               atol=1e-5)
    height, thickness = slabs.columns()
    assert torch.allclose(height, torch.full((4, 5), 150.0))
    assert torch.allclose(thickness, torch.full((4, 5), 60.0))


def test_region_shift_and_stretch_are_differentiable_and_commit_into_heights():
    height = torch.tensor([[100.0, 140.0, 300.0, 300.0]])
    slabs = SlabColumns(height, torch.full((1, 4), 40.0), potential=5.0, nz=24, dz=DZ)
    slabs.attach_regions(np.array([[1, 1, 2, 2]]))
    slabs.volume().sum().backward()  # gradients reach the region parameters
    groups = slabs.fit_groups(4.0)
    assert len(groups) == 2 and all(p.grad is not None for g in groups for p in g["params"])
    with torch.no_grad():
        groups[1]["params"][0][1:] = torch.tensor([10.0, -20.0])  # shifts
        slabs._regions.stretch[1] = 2.0  # stretch region 1 about its centre (120 Å)
    shifts, stretches = slabs.commit_regions()
    np.testing.assert_allclose(shifts, [10.0, -20.0])
    np.testing.assert_allclose(slabs.columns()[0].numpy(), [[90.0, 170.0, 280.0, 280.0]])


def test_height_jumps_split_regions_and_tiles_split_further():
    support = np.zeros((8, 12), bool)
    support[2:6, 1:11] = True
    height = np.where(np.arange(12) < 6, 100.0, 400.0)[None].repeat(8, 0)
    labels = height_components(support, height, jump=60.0)
    assert labels.max() == 2 and set(np.unique(labels[:, :6][support[:, :6]])) == {1}
    assert find_regions(support, height, jump=1000.0).count == 1
    # Rows 2-5 span two 4-row tiles, columns 1-10 three 4-column tiles.
    assert tile(find_regions(support, height, jump=1000.0).labels, 4).max() == 6
    grown = np.zeros_like(support)
    grown[1:7, 0:12] = True
    inherited = inherit(Regions(labels), grown)
    assert inherited.labels[1, 0] == 1 and inherited.labels[6, 11] == 2 and inherited.count == 2


def test_colour_groups_never_hold_overlapping_windows():
    labels = np.zeros((20, 40), np.int32)
    labels[5:15, 2:8], labels[5:15, 12:18], labels[5:15, 30:36] = 1, 2, 3
    masks = windows(Regions(labels), 3)
    groups = colour_groups(masks, 0)
    assert sorted(i for g in groups for i in g) == [0, 1, 2]
    for g in groups:
        for a in g:
            for b in g:
                assert a == b or not (masks[a] & masks[b]).any()
    assert len(groups) == 2  # regions 1 and 2 are 4 px apart: their 3 px windows overlap


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
