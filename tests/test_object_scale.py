"""Per-object thickness factors chosen by the low-passed data loss (refine/object_scale.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream3d.config import Config
from stream3d.refine.measurement import measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.object_scale import FACTORS, object_factors
from stream3d.refine.slabs import column_slabs, slab_volume
from stream3d.simulate import simulate_frame
from stream3d.specimen.geometry import slab_profile
from stream3d.specimen.shapes import Disc, discs

CONFIG = Config().replace("sample", slices=16, slice_thickness=40.0, absorption=0.0) \
    .replace("refine", device="cpu")
SHAPE = (16, 128, 128)


@pytest.fixture(scope="module")
def two_discs():
    """Two 80 Å discs at different heights, imaged with texture and shot noise."""
    s = CONFIG.sample
    truth = discs(SHAPE, s.sampling, [Disc(40.0, 40.0, 20.0, 200.0, 80.0),
                                      Disc(88.0, 88.0, 20.0, 420.0, 80.0)])
    frame, _ = simulate_frame(truth, CONFIG, seed=5)
    return truth, frame


def _factors(truth: np.ndarray, frame: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The factors object_factors picks for the true slabs with thickness x ``scale`` (y, x)."""
    model = ImagingModel.from_config(CONFIG)
    dev = torch.device("cpu")
    slabs = column_slabs(truth * CONFIG.sample.potential, potential=model.potential, dz=model.dz)
    centre = torch.as_tensor(slabs.centre)
    thickness = torch.as_tensor(slabs.thickness * scale)

    def build(t: torch.Tensor) -> torch.Tensor:
        return slab_volume(centre, t, nz=SHAPE[0], dz=model.dz, potential=model.potential)

    factors = object_factors(thickness, build, model.intensity,
                             measured_intensity(frame, model, dev),
                             pixel_size=CONFIG.sample.pixel_size, pad=8)
    return factors.numpy()


def test_the_true_thickness_is_kept(two_discs):
    truth, frame = two_discs
    factors = _factors(truth, frame, np.ones(SHAPE[1:]))
    assert factors[40, 40] == 1.0 and factors[88, 88] == 1.0
    assert factors[0, 127] == 1.0  # solvent


def test_each_object_is_scaled_back_toward_its_own_thickness(two_discs):
    """One disc started 1.5x too thin, the other 1.4x too thick: each gets its own factor,
    on the side that undoes its error."""
    truth, frame = two_discs
    scale = np.ones(SHAPE[1:])
    scale[:64, :64] = 1 / 1.5
    scale[64:, 64:] = 1.4
    factors = _factors(truth, frame, scale)
    assert factors[40, 40] >= 1.3 and factors[88, 88] <= 0.8 + 1e-6
    # Far apart, the discs' factors do not blend: every column holds one of FACTORS.
    assert np.abs(factors[..., None] - np.asarray(FACTORS)).min(axis=-1).max() < 1e-3


def test_a_long_object_gets_a_factor_per_region_without_a_step():
    """A bar across two REGION cells, its left half started 1.5x too thin and its right half
    right: the left half is scaled back and the right half kept (one factor for the whole bar
    would get one of them wrong), and the factor changes smoothly where the halves meet."""
    s = CONFIG.sample
    bar = np.zeros(SHAPE[1:], dtype=bool)
    bar[30:54, 6:122] = True  # inside one row of REGION cells
    truth = (slab_profile(SHAPE[0], s.slice_thickness, 260.0, 340.0)[:, None, None]
             * bar[None]).astype(np.float32)
    frame, _ = simulate_frame(truth, CONFIG, seed=7)
    scale = np.where(np.arange(SHAPE[2])[None, :] < 64, 1 / 1.5, 1.0) * np.ones(SHAPE[1:])
    factors = _factors(truth, frame, scale)
    assert factors[42, 20] >= 1.3 and 0.9 <= factors[42, 108] <= 1.15
    along = factors[42, 6:122]
    assert np.abs(np.diff(along)).max() < 0.1  # blended over BLEND Å: no seam
