"""Each object's edge grown where the data put it (refine/object_edges.py), judged against the
true footprint of simulated discs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from refine_specimens import CONFIG, SHAPE, two_disc_frame
from stream3d.refine.measurement import measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.object_edges import moved_objects, object_edges
from stream3d.refine.slabs import column_slabs, slab_volume


@pytest.fixture(scope="module")
def two_discs():
    """Two 80 Å discs at different heights, imaged with texture and shot noise."""
    return two_disc_frame()


def _edges(truth: np.ndarray, frame: np.ndarray, shrink: int) -> tuple[np.ndarray, np.ndarray]:
    """(start columns, columns after object_edges) for the true slabs with every disc's edge
    ``shrink`` px in (negative: out)."""
    model = ImagingModel.from_config(CONFIG)
    slabs = column_slabs(truth * CONFIG.sample.potential, potential=model.potential, dz=model.dz)
    material = slabs.thickness.sum(axis=0) > 0
    if shrink > 0:
        start = ndimage.binary_erosion(material, iterations=shrink)
    else:
        start = ndimage.binary_dilation(material, iterations=-shrink)
    _, (iy, ix) = ndimage.distance_transform_edt(~material, return_indices=True)
    centre = np.where(start, slabs.centre[:, iy, ix], np.nan)
    thickness = np.where(start, slabs.thickness[:, iy, ix], 0.0)

    def build(c, t, columns):
        return slab_volume(c, t, nz=SHAPE[0], dz=model.dz, potential=model.potential,
                           columns=columns)

    _, t = object_edges(torch.as_tensor(centre), torch.as_tensor(thickness), build,
                        model.intensity, measured_intensity(frame, model, torch.device("cpu")),
                        pixel_size=CONFIG.sample.pixel_size, pad=8)
    return start, t.numpy().sum(axis=0) > 0


def test_a_start_two_pixels_short_of_the_edge_grows_back(two_discs):
    truth, frame = two_discs
    material = truth.any(axis=0)
    start, after = _edges(truth, frame, shrink=2)
    missed = material & ~start
    assert (after & missed).sum() >= 0.9 * missed.sum()  # the lost rim is back
    assert (after & ~material).sum() <= 0.1 * missed.sum()  # and hardly more


def test_the_true_edge_stays(two_discs):
    truth, frame = two_discs
    start, after = _edges(truth, frame, shrink=0)
    assert (after != start).sum() <= 0.05 * start.sum()


def test_a_start_too_wide_is_not_shrunk(two_discs):
    """Moves in are judged but never made (a soft-edged start's thin true rim would go)."""
    truth, frame = two_discs
    start, after = _edges(truth, frame, shrink=-3)
    assert np.array_equal(after, start)


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 5])
def test_growth_never_joins_two_objects_and_shrinking_never_removes_one(gap):
    column = np.zeros((40, 60))
    column[10:30, 5:25] = 60.0
    column[10:30, 25 + gap:45 + gap] = 60.0
    column[2:4, 55:57] = 60.0  # a 2 x 2 speck
    grown, source = moved_objects(column, -2)
    assert ndimage.label(grown, structure=np.ones((3, 3)))[1] == 3
    assert grown[10:30, 3:5].all() and grown[8:10, 5:25].all()  # it grows where nothing is near
    assert (grown & ~(column > 0)).sum() > 0
    # a grown column takes the slabs of the nearest material column
    assert source[20, 3] == 20 * 60 + 5
    shrunk, _ = moved_objects(column, 4)
    assert shrunk[2:4, 55:57].all()  # the speck keeps its columns
    assert shrunk[14:26, 9:21].all() and not shrunk[10:14, 5:25].any()
