"""The accuracy suite's randomised specimens: right sizes, heights and overlaps, seed-driven."""

import numpy as np
import pytest
from scipy import ndimage

from stream3d.analysis.accuracy import footprint
from stream3d.specimen import column_height, column_thickness
from stream3d.specimen.suite_shapes import (
    branched_dendrite, disc_items, overlapping_layers, scattered_discs, thick_particle,
    tilted_plate,
)

SHAPE, SAMPLING, DZ = (32, 128, 128), (20.0, 1.0, 1.0), 20.0
DEPTH = 32 * DZ


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discs_sit_apart_at_three_heights(seed):
    items = disc_items(SHAPE, SAMPLING, rng(seed))
    assert len(items) == 3
    for d, h in zip(items, (0.2, 0.5, 0.8)):
        assert abs(d.height - h * DEPTH) <= 0.04 * DEPTH + 1e-9
        assert 0.07 * DEPTH <= d.thickness <= 0.12 * DEPTH
        assert d.radius + 0.08 * 128 <= d.y <= 128 - d.radius - 0.08 * 128
    for a in items:  # separate: no two discs closer than the 8 % gap
        for b in items:
            if a is not b:
                assert np.hypot(a.y - b.y, a.x - b.x) >= a.radius + b.radius + 0.08 * 128 - 1e-9
    occ = scattered_discs(SHAPE, SAMPLING, rng(seed))
    _, count = ndimage.label(footprint(occ, DZ))
    assert count == 3


def test_the_seed_moves_every_specimen():
    for build in (scattered_discs, thick_particle, tilted_plate):
        a, b = build(SHAPE, SAMPLING, rng(0)), build(SHAPE, SAMPLING, rng(1))
        assert not np.array_equal(a, b), build.__name__
        assert np.array_equal(a, build(SHAPE, SAMPLING, rng(0))), build.__name__
    la, lb = overlapping_layers(SHAPE, SAMPLING, rng(0)), overlapping_layers(SHAPE, SAMPLING, rng(1))
    assert not np.array_equal(la[0], lb[0])
    da = branched_dendrite(SHAPE, SAMPLING, rng(0)).occupancy(0)
    db = branched_dendrite(SHAPE, SAMPLING, rng(1)).occupancy(0)
    assert not np.array_equal(da, db)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_layers_share_columns_at_two_heights(seed):
    low, high = overlapping_layers(SHAPE, SAMPLING, rng(seed))
    a, b = footprint(low, DZ), footprint(high, DZ)
    shared = a & b
    # centre distance 2r(1 - overlap) with overlap 0.45..0.65: a real lens of shared columns
    assert 0.2 < shared.sum() / a.sum() < 0.7
    h_low, h_high = column_height(low, DZ)[a], column_height(high, DZ)[b]
    assert abs(np.median(h_low) - 0.22 * DEPTH) <= 0.03 * DEPTH + 1
    assert abs(np.median(h_high) - 0.72 * DEPTH) <= 0.03 * DEPTH + 1
    assert np.allclose(column_thickness(low, DZ)[a], 0.1 * DEPTH, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_thick_particle_is_300_angstrom_through(seed):
    occ = thick_particle(SHAPE, SAMPLING, rng(seed))
    t = column_thickness(occ, DZ)
    fp = footprint(occ, DZ)
    assert np.allclose(t[fp], 300.0, atol=1e-3)
    radius = np.sqrt(fp.sum() / np.pi)
    assert 0.2 * 128 - 1 <= radius <= 0.27 * 128 + 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tilted_plate_spans_its_heights(seed):
    occ = tilted_plate(SHAPE, SAMPLING, rng(seed))
    fp = footprint(occ, DZ)
    h = column_height(occ, DZ)[fp]
    assert h.min() == pytest.approx(0.23 * DEPTH, abs=DZ)
    assert h.max() == pytest.approx(0.77 * DEPTH, abs=DZ)
    assert np.allclose(column_thickness(occ, DZ)[fp], 0.1 * DEPTH, atol=1e-3)


def test_dendrite_tubes_are_thin_and_grow():
    tree = branched_dendrite(SHAPE, SAMPLING, rng(0), initial_length=20.0)
    assert tree.params.radius == (15.0, 30.0)
    radii = [b.radius for b in tree.branches]
    assert min(radii) >= 15.0 and max(radii) <= 30.0
    occ0, occ5 = tree.occupancy(0), tree.occupancy(5)
    assert occ5.sum() > occ0.sum() and np.all(occ5 >= occ0)
    fp = footprint(occ0, DZ)
    h = column_height(occ0, DZ)[fp]
    assert h.min() >= 0.16 * DEPTH - 1 and h.max() <= 0.84 * DEPTH + 1


def test_a_tiny_grid_shrinks_the_tubes_and_a_crowded_field_is_refused():
    tree = branched_dendrite((8, 64, 64), SAMPLING, rng(0))
    assert tree.params.radius[1] <= 16.0 and tree.occupancy(0).max() > 0.5
    with pytest.raises(ValueError, match="do not fit"):
        disc_items(SHAPE, SAMPLING, rng(0), heights=(0.5,) * 3, radius=(0.4, 0.45))
