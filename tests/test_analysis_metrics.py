"""Per-frame metrics against analytic shapes: volume, surface area, heights, centre, parts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream3d.analysis import frame_metrics, isosurface, mesh_area
from stream3d.analysis.maps import top_bottom
from stream3d.analysis.metrics import growth_rate
from stream3d.specimen import three_disc_items, three_discs, tilted_slab, two_layers

SHAPE, SAMPLING = (32, 100, 100), (20.0, 1.0, 1.0)
POTENTIAL = 5.0  # V, full material: the threshold is half of it


def _measure(occupancy, **kw):
    return frame_metrics(occupancy * POTENTIAL, sampling=SAMPLING, level=POTENTIAL, **kw)


@pytest.mark.parametrize("heights, thickness", [((113.0, 327.0, 505.0), 70.0),
                                                ((150.0, 300.0, 450.0), 150.0)])
def test_three_discs_volume_area_heights_centre_and_parts(heights, thickness):
    items = three_disc_items(SHAPE, SAMPLING, heights=heights, thickness=thickness)
    m = _measure(three_discs(SHAPE, SAMPLING, heights=heights, thickness=thickness))
    volume = sum(math.pi * d.radius**2 * d.thickness for d in items) / 1e3  # nm³
    area = sum(2 * math.pi * d.radius * (d.radius + d.thickness) for d in items) / 1e2  # nm²
    assert m.volume_nm3 == pytest.approx(volume, rel=0.01)
    assert m.area_nm2 == pytest.approx(area, rel=0.05)
    # Faces off the 20 Å slice grid are placed to a few Å, not to a slice.
    assert m.height_max_nm * 10 == pytest.approx(max(d.height + d.thickness / 2 for d in items), abs=3)
    assert m.height_min_nm * 10 == pytest.approx(min(d.height - d.thickness / 2 for d in items), abs=3)
    assert m.depth_extent_nm == pytest.approx(m.height_max_nm - m.height_min_nm)
    weights = np.array([d.radius**2 for d in items])
    for got, want in ((m.com_x_nm, [d.x for d in items]), (m.com_y_nm, [d.y for d in items]),
                      (m.com_z_nm, [d.height for d in items])):
        assert got * 10 == pytest.approx(np.average(want, weights=weights), abs=1.5)
    assert m.parts == 3


@pytest.mark.parametrize("left, right, thickness", [(150.0, 450.0, 100.0), (200.0, 260.0, 60.0),
                                                    (100.0, 540.0, 80.0)])
def test_tilted_slab_volume_and_area(left, right, thickness):
    occ = tilted_slab(SHAPE, SAMPLING, height_left=left, height_right=right, thickness=thickness)
    m = _measure(occ)
    side = 0.8 * 100  # Å: the slab leaves 10 % of solvent on every side
    slope = (right - left) / 100
    assert m.volume_nm3 == pytest.approx(side * side * thickness / 1e3, rel=0.01)
    # Two tilted faces and four side walls of (vertical) height `thickness`.
    area = 2 * side * side * math.hypot(1, slope) + 4 * side * thickness
    assert m.area_nm2 == pytest.approx(area / 1e2, rel=0.05)
    assert m.height_max_nm * 10 == pytest.approx(left + (right - left) * 0.9 + thickness / 2, abs=4)
    assert m.parts == 1


def test_two_layers_are_two_boxes():
    occ = two_layers(SHAPE, SAMPLING, heights=(150.0, 450.0), thickness=100.0)
    m = _measure(occ)
    wide, deep, t = 50.0, 60.0, 100.0  # each layer: 0.5 x 0.6 of the 100 Å field, 100 Å thick
    assert m.volume_nm3 == pytest.approx(2 * wide * deep * t / 1e3, rel=0.01)
    assert m.area_nm2 == pytest.approx(2 * (2 * wide * deep + 2 * t * (wide + deep)) / 1e2, rel=0.05)
    assert (m.height_min_nm, m.height_max_nm) == pytest.approx((10.0, 50.0), abs=0.3)
    assert m.parts == 2


def test_sphere_area_of_a_smooth_field_is_exact_to_a_percent():
    # Signed distance to a sphere of radius 12 on a 1 Å grid: the level set is the sphere.
    z, y, x = np.mgrid[:32, :32, :32] + 0.5
    field = 12.0 - np.sqrt((z - 16) ** 2 + (y - 16.2) ** 2 + (x - 15.7) ** 2)
    area = mesh_area(isosurface(field, 0.0, (1.0, 1.0, 1.0), outside=-1.0))
    assert area == pytest.approx(4 * math.pi * 12.0**2, rel=0.01)


def test_noise_leaves_volume_and_parts():
    occ = three_discs(SHAPE, SAMPLING, heights=(150.0, 300.0, 450.0), thickness=100.0)
    clean = _measure(occ)
    noisy = occ * POTENTIAL + np.random.default_rng(0).normal(0, 0.1 * POTENTIAL, occ.shape)
    m = frame_metrics(noisy, sampling=SAMPLING, level=POTENTIAL)
    assert m.volume_nm3 == pytest.approx(clean.volume_nm3, rel=0.05)
    assert m.parts == 3


def test_parts_smaller_than_the_minimum_are_not_counted():
    occ = three_discs(SHAPE, SAMPLING, heights=(150.0, 300.0, 450.0), thickness=100.0)
    occ[5, 2, 2] = 1.0  # one stray voxel: 20 Å³ = 0.02 nm³
    assert _measure(occ).parts == 3
    assert _measure(occ, min_part_volume=0.0).parts == 4


def test_no_material_gives_zero_volume_and_no_positions():
    for volume in (np.zeros(SHAPE), np.full(SHAPE, np.nan)):
        m = frame_metrics(volume, sampling=SAMPLING, level=POTENTIAL)
        assert (m.volume_nm3, m.area_nm2, m.parts) == (0.0, 0.0, 0)
        assert math.isnan(m.height_max_nm) and math.isnan(m.com_x_nm)


def test_top_and_bottom_faces_between_slice_centres():
    occ = np.zeros((4, 1, 1))
    occ[:, 0, 0] = [0.4, 1.0, 0.6, 0.0]  # heights 70, 50, 30, 10 Å: material from 18 to 68 Å
    top, bottom = top_bottom(occ, 20.0)
    assert top[0, 0] == pytest.approx(50 + 20 * 0.5 / 0.6)  # 0.5 crossing between 50 and 70 Å
    assert bottom[0, 0] == pytest.approx(30 - 20 * 0.1 / 0.6)


def test_growth_rate_spans_frames_without_numbers():
    volume = np.array([10.0, 14.0, np.nan, 22.0, np.nan])
    time = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    analysed = np.array([True, True, False, True, False])
    rate = growth_rate(volume, time, analysed)
    np.testing.assert_allclose(rate[[0, 1, 3]], [8.0, 8.0, 8.0])  # a line through 10, 14, 22
    assert np.isnan(rate[[2, 4]]).all()


def test_growth_rate_of_a_noisy_growing_volume_stays_positive():
    # 10 nm³ per frame of growth, ±8 nm³ of alternating noise: frame-to-frame differences dip
    # to -6 nm³ per frame; the five-frame slope stays within 40 % of the true 10.
    t = np.arange(12.0)
    volume = 100.0 + 10.0 * t + 8.0 * (-1.0) ** t
    assert (np.diff(volume) < 0).any()
    rate = growth_rate(volume, t, np.ones(12, bool))
    assert (rate > 0).all()
    np.testing.assert_allclose(rate[2:-2], 10.0, rtol=0.4)


def test_volume_of_a_textured_potential_is_its_material_volume():
    # The simulator's potential: V = potential x occupancy x (1 + 0.3 x amorphous texture).
    from stream3d.config import Sample
    from stream3d.specimen import occupancy_to_potential

    occ = three_discs(SHAPE, SAMPLING, heights=(150.0, 300.0, 450.0), thickness=100.0)
    sample = Sample(potential=POTENTIAL, slice_thickness=SAMPLING[0], texture=0.3)
    textured = occupancy_to_potential(occ, sample, rng=np.random.default_rng(1))
    m = frame_metrics(textured, sampling=SAMPLING, level=POTENTIAL)
    assert m.volume_nm3 == pytest.approx(occ.sum() * 20.0 / 1e3, rel=0.03)
    assert m.parts == 3
