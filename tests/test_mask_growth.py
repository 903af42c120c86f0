"""Pop-out's mask growth: edges followed down a taper, gaps in objects filled (values, not
snapshots: each test fails if its rule is removed)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stream3d.popout.mask_growth import (
    MIN_GAP_PX, TAPER_PX, fill_gaps, follow_taper, keep_apart, split_necks,
)


def _radius(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    y, x = np.indices(shape)
    return np.hypot(y - centre[0], x - centre[1])


def test_follow_taper_reaches_a_round_objects_thin_edge_and_stops_in_the_solvent():
    rng = np.random.default_rng(0)
    r = _radius((96, 96), (48, 48))
    # A sphere of radius 30 px: chord thickness 2 sqrt(R^2 - r^2) Å, thin near its edge.
    truth = 2 * np.sqrt(np.clip(30.0**2 - r**2, 0, None))
    noisy = truth + rng.normal(0.0, 3.0, truth.shape)
    solvent = r > 36
    seed = noisy > 40.0  # the noise threshold keeps only the thick middle
    grown = follow_taper(seed, noisy, solvent, np.ones_like(seed))
    material = truth >= 10.0
    assert (seed & material).sum() < 0.75 * material.sum()  # what is there to recover
    assert (grown & material).sum() >= 0.97 * material.sum()
    # Reach is bounded: nothing beyond TAPER_PX px of the seed, and little solvent taken.
    assert not (grown & (r > 30 + 2)).sum() > 0.02 * (r > 32).sum()
    assert not (grown & (ndimage.distance_transform_edt(~seed) > TAPER_PX)).any()


def test_fill_gaps_fills_an_enclosed_gap_and_one_open_through_a_crack_but_not_a_bay():
    r = _radius((80, 80), (40, 40))
    ring = (r < 30) & (r >= 12)
    t = np.where(ring, 50.0, 0.0)
    valid = np.ones_like(ring)
    filled, thick, gaps = fill_gaps(ring, t, 15.0, valid)
    assert filled[r < 12].all() and gaps.sum() == (r < 12).sum()
    assert np.allclose(thick[r < 12], 50.0)  # the median of the material around the gap
    # A crack 4 px wide still encloses the gap...
    cracked = ring.copy()
    cracked[38:42, :40] = False
    filled, _, _ = fill_gaps(cracked, np.where(cracked, 50.0, 0.0), 15.0, valid)
    assert filled[r < 11].all()
    # ...a bay 20 px wide does not: that is the object's shape, not a gap.
    bay = ring & ~((np.abs(np.indices(ring.shape)[0] - 40) < 10) & (np.indices(ring.shape)[1] < 40))
    filled, _, gaps = fill_gaps(bay, np.where(bay, 50.0, 0.0), 15.0, valid)
    assert not filled[40, 15] and not filled[40, 40] and not gaps.any()
    # A thin gap's thickness is never below the floor.
    _, thick, _ = fill_gaps(ring, np.where(ring, 5.0, 0.0), 15.0, valid)
    assert np.allclose(thick[r < 12], 15.0)


def test_the_thinnest_column_counts_as_material_wherever_float32_puts_its_edges():
    """Pop-out's and refinement's material prior keeps a column at least half a slice thick;
    built in float32 at arbitrary heights, exactly half a slice can come out a hair under it
    (and the column then reads as missing, at the cost of its whole height)."""
    from stream3d.popout.volume import build_volume
    from stream3d.specimen import column_thickness
    from stream3d.specimen.geometry import least_column

    dz, nz, potential = 20.0, 32, 5.0
    heights = np.random.default_rng(1).uniform(10.0, 630.0, (64, 64))

    def thickness(t: float) -> np.ndarray:
        volume = build_volume(heights, np.full(heights.shape, t), slices=nz,
                              slice_thickness=dz, potential=potential)
        return column_thickness(volume / potential, dz)

    assert (thickness(dz / 2) < dz / 2).any()  # why the margin exists
    assert (thickness(least_column(dz)) >= dz / 2).all()
    assert least_column(dz) - dz / 2 < 0.01  # and it is only a hair


def _two_discs(gap: float, n: int = 128, radius: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Two 60 Å discs ``gap`` px apart along x: (left, right) footprints."""
    left = _radius((n, n), (n / 2, n / 2 - radius - gap / 2)) <= radius
    right = _radius((n, n), (n / 2, n / 2 + radius + gap / 2)) <= radius
    return left, right


def test_growth_stops_at_a_neighbour_at_another_height():
    left, right = _two_discs(gap=8)
    seeds = ndimage.binary_erosion(left | right, iterations=3)  # the threshold's mask
    grown = ndimage.binary_dilation(seeds, iterations=8)  # taper, core, fill: blind growth
    assert ndimage.label(grown)[1] == 1
    height = np.where(left, 200.0, 400.0)
    apart = keep_apart(grown, seeds, height, tolerance=40.0)
    labels, count = ndimage.label(apart)
    assert count == 2
    assert set(np.unique(labels[left & apart])) == {1} or set(np.unique(labels[left & apart])) == {2}
    assert (grown & ~apart).sum() < 0.05 * grown.sum()  # a line, not a moat


def test_a_crack_in_one_object_is_not_a_gap():
    disc = _radius((96, 96), (48, 48)) <= 30
    crack = np.abs(np.indices((96, 96))[1] - 48) <= 1  # 3 px of noise under the threshold
    seeds = disc & ~crack
    assert ndimage.label(seeds)[1] == 2
    grown = ndimage.binary_dilation(seeds, iterations=3)
    kept = keep_apart(grown, seeds, np.full((96, 96), 300.0), tolerance=40.0)
    assert ndimage.label(kept)[1] == 1 and (kept == grown).all()
    # the same pieces at heights 100 Å apart are two objects
    split = keep_apart(grown, seeds, np.where(np.indices((96, 96))[1] < 48, 250.0, 350.0), 40.0)
    assert ndimage.label(split)[1] == 2


def test_necks_the_resolution_blurred_are_cut_branches_are_not():
    # Two 60 Å discs 4 px apart, seen through the thickness map's 2.5 px resolution: the gap
    # fills to ~25 Å, above a 15 Å threshold, so the threshold sees one object.
    left, right = _two_discs(gap=MIN_GAP_PX)
    t = ndimage.gaussian_filter(60.0 * (left | right), 2.5)
    mask = t > 15.0
    assert ndimage.label(mask)[1] == 1
    cut = split_necks(mask, t, depth=15.0)
    labels, count = ndimage.label(cut)
    assert count == 2
    assert (cut & (left | right)).sum() > 0.97 * (left | right).sum()  # the cut is the gap
    # A 40 Å branch on a 60 Å trunk: the thickness never dips below the branch's own.
    trunk = _radius((128, 128), (64, 50)) <= 25
    branch = (np.abs(np.indices((128, 128))[0] - 64) <= 6) & (np.indices((128, 128))[1] > 60)
    t = ndimage.gaussian_filter(np.where(trunk, 60.0, np.where(branch, 40.0, 0.0)), 2.5)
    mask = t > 15.0
    assert ndimage.label(split_necks(mask, t, depth=15.0))[1] == 1


def test_a_short_neck_between_objects_at_two_heights_is_cut():
    # 1.5 px apart the blurred gap dips only to ~0.8 of the discs' thickness: one object by
    # thickness alone, two when their heights differ by more than 2 x tolerance. A plate whose
    # height varies as much is not cut: its basins meet along a long line, not a neck.
    left, right = _two_discs(gap=1.5)
    t = ndimage.gaussian_filter(60.0 * (left | right), 2.5)
    mask = t > 15.0
    same = np.full(t.shape, 300.0)
    assert ndimage.label(split_necks(mask, t, 15.0, same, tolerance=40.0))[1] == 1
    two = np.where(np.indices(t.shape)[1] < 64, 200.0, 400.0)
    assert ndimage.label(split_necks(mask, t, 15.0, two, tolerance=40.0))[1] == 2
    plate = np.zeros((128, 128))
    plate[20:108, 20:108] = 60.0
    plate[20:108, 62:66] = 30.0  # a trough across the plate: two basins, a long line
    t = ndimage.gaussian_filter(plate, 2.5)
    ramp = np.broadcast_to(np.linspace(100.0, 500.0, 128), t.shape)
    assert ndimage.label(split_necks(t > 15.0, t, 15.0, ramp, tolerance=40.0))[1] == 1
