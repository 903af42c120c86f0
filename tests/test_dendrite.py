"""The growing dendrite: connected, monotone, inside its box, exact volumes, deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from stream3d.specimen import Dendrite, DendriteParams, column_thickness
from stream3d.specimen.dendrite import _paint_capsule

SHAPE, SAMPLING = (32, 160, 160), (20.0, 1.0, 1.0)
PARAMS = DendriteParams(branches=7, growth=12.0, depth=(100.0, 540.0), radius=(20.0, 28.0), seed=3)
FRAMES = (0, 1, 2, 5, 9)


@pytest.fixture(scope="module")
def frames() -> dict[int, np.ndarray]:
    dendrite = Dendrite(PARAMS, SHAPE, SAMPLING)
    return {t: dendrite.occupancy(t) for t in FRAMES}


def test_occupancy_is_a_float32_fraction(frames):
    for occ in frames.values():
        assert occ.shape == SHAPE and occ.dtype == np.float32
        assert occ.min() >= 0.0 and occ.max() == pytest.approx(1.0)
        # Partial-volume edges: some voxels are only partly filled.
        assert ((occ > 0.05) & (occ < 0.95)).sum() > 0.05 * (occ > 0).sum()


def test_dendrite_is_one_connected_piece(frames):
    for t, occ in frames.items():
        _, parts = ndimage.label(occ > 0.5)  # face connectivity, the strictest
        assert parts == 1, f"frame {t} has {parts} pieces"


def test_growth_never_shrinks_and_adds_material_every_frame(frames):
    ts = sorted(frames)
    for t0, t1 in zip(ts, ts[1:]):
        assert (frames[t1] - frames[t0]).min() >= -1e-6
        assert frames[t1].sum() > frames[t0].sum() * 1.02


def test_growth_rate_matches_the_parameter():
    dendrite = Dendrite(PARAMS, SHAPE, SAMPLING)
    # Every branch that is still growing advances its tip by `growth` Å per frame.
    growing = [b for b in dendrite.branches
               if b.birth < dendrite.clock(1) and dendrite.clock(2) < b.birth + b.arc[-1]]
    assert growing
    assert dendrite.length(2) - dendrite.length(1) == pytest.approx(12.0 * len(growing), rel=1e-9)


def test_stays_inside_the_grid_and_the_depth_range(frames):
    low, high = PARAMS.depth
    dz = SAMPLING[0]
    nz = SHAPE[0]
    for occ in frames.values():
        assert occ[:, [0, -1], :].max() == 0 and occ[:, :, [0, -1]].max() == 0
        filled = np.nonzero(occ.max(axis=(1, 2)) > 0)[0]
        bottoms = (nz - filled - 1) * dz
        assert bottoms.min() + dz > low and bottoms.max() < high
        # Slices entirely outside [low, high] are empty; the boundary slices are partly filled.
        lo_slice, hi_slice = nz - 1 - int(low // dz), nz - 1 - int(high // dz)
        assert occ[lo_slice + 1:].max() == 0 and occ[:hi_slice].max() == 0
    # And the tree really spreads through hundreds of Å of the layer.
    last = frames[max(frames)]
    filled = np.nonzero(last.max(axis=(1, 2)) > 0.5)[0]
    assert (filled.max() - filled.min() + 1) * dz >= 200


def test_same_seed_same_volume_other_seed_other_volume(frames):
    again = Dendrite(PARAMS, SHAPE, SAMPLING).occupancy(5)
    np.testing.assert_array_equal(again, frames[5])
    other = Dendrite(DendriteParams(**{**PARAMS.__dict__, "seed": 4}), SHAPE, SAMPLING).occupancy(5)
    assert np.abs(other - frames[5]).mean() > 0.1 * frames[5].mean()


@pytest.mark.parametrize("a, b", [
    ((300.0, 60.0, 60.0), (300.0, 60.0, 120.0)),   # lying in the layer
    ((250.0, 60.0, 60.0), (350.0, 80.0, 110.0)),   # oblique
    ((200.0, 80.0, 80.0), (380.0, 80.0, 80.0)),    # along the beam
    ((301.0, 80.0, 80.0), (301.0, 80.0, 80.0)),    # a sphere (the nucleus)
])
def test_capsule_volume_is_exact(a, b):
    occ = np.zeros((32, 160, 160), np.float32)
    r = 25.3
    _paint_capsule(occ, SAMPLING, np.array(a), np.array(b), r)
    length = math.dist(a, b)
    exact = math.pi * r * r * length + 4 / 3 * math.pi * r**3
    assert occ.sum() * 20.0 == pytest.approx(exact, rel=0.006)  # lateral pixel sampling only
    if a[1:] == b[1:]:
        # The column nearest the axis (pixel centre 0.5 Å off in y and x) holds exactly the
        # chord, spread over partial 20 Å slices.
        y, x = int(a[1]), int(a[2])
        chord = 2 * math.sqrt(r * r - 0.5) + length
        assert column_thickness(occ, 20.0)[y, x] == pytest.approx(chord, abs=1e-3)


@pytest.mark.parametrize("params, shape, message", [
    (DendriteParams(depth=(100.0, 700.0)), (32, 128, 128), "outside the cell"),
    (DendriteParams(depth=(300.0, 320.0)), (32, 128, 128), "thinner than"),
    (DendriteParams(branches=0), (32, 128, 128), "branches"),
    (DendriteParams(), (32, 40, 40), "too small"),
])
def test_bad_parameters_name_the_problem(params, shape, message):
    with pytest.raises(ValueError, match=message):
        Dendrite(params, shape, SAMPLING)
