"""Exact geometry of the simple specimens: heights and thicknesses from occupancy."""

from __future__ import annotations

import numpy as np
import pytest

from stream3d.specimen import (
    column_height, column_thickness, height_to_slice, slice_centres, three_disc_items, three_discs,
    tilted_slab, two_layers,
)


def test_slice_centres_and_inverse():
    c = slice_centres(4, 10.0)
    np.testing.assert_allclose(c, [35.0, 25.0, 15.0, 5.0])
    np.testing.assert_allclose(height_to_slice(c, 4, 10.0), [0, 1, 2, 3])


def test_three_discs_heights_and_exact_thickness_off_the_slice_grid():
    shape, sampling = (32, 128, 128), (20.0, 1.0, 1.0)
    heights = (113.0, 327.0, 505.0)  # not on slice centres: partial slices carry the fraction
    occ = three_discs(shape, sampling, heights=heights, thickness=70.0)
    h, t = column_height(occ, 20.0), column_thickness(occ, 20.0)
    for d in three_disc_items(shape, sampling, heights=heights, thickness=70.0):
        assert h[int(d.y), int(d.x)] == pytest.approx(d.height, abs=1.0)  # voxel COM, dz = 20
        assert t[int(d.y), int(d.x)] == pytest.approx(70.0, abs=1e-4)
    assert np.isnan(h[0, 0]) and t[0, 0] == 0
    area = (occ.sum(axis=0) > 0).sum()
    assert area == pytest.approx(3 * np.pi * (0.18 * 128) ** 2, rel=0.03)


def test_tilted_slab_height_is_linear_in_x():
    occ = tilted_slab((32, 64, 64), (20.0, 1.0, 1.0), height_left=100.0, height_right=500.0,
                      thickness=60.0)
    h = column_height(occ, 20.0)[32]
    x = np.arange(64) + 0.5
    inside = (x > 6.4) & (x < 57.6)
    np.testing.assert_allclose(h[inside], 100.0 + 400.0 * x[inside] / 64, atol=1e-4)


def test_two_layers_overlap_band_holds_both():
    occ = two_layers((32, 64, 64), (20.0, 1.0, 1.0), heights=(100.0, 500.0), thickness=60.0)
    t = column_thickness(occ, 20.0)[32]
    h = column_height(occ, 20.0)[32]
    assert t[10] == pytest.approx(60) and h[10] == pytest.approx(100)
    assert t[32] == pytest.approx(120) and h[32] == pytest.approx(300)
    assert t[55] == pytest.approx(60) and h[55] == pytest.approx(500)
