"""Pop-out's mask growth: edges followed down a taper, gaps in objects filled (values, not
snapshots: each test fails if its rule is removed)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stream3d.popout.mask_growth import TAPER_PX, fill_gaps, follow_taper


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
