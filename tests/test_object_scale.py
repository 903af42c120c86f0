"""Per-object thickness factors chosen by the low-passed data loss (refine/object_scale.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from refine_specimens import CONFIG, SHAPE, two_disc_frame
from stream3d.refine.measurement import measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.object_scale import FACTORS, object_factors
from stream3d.refine.slabs import column_slabs, slab_volume
from stream3d.simulate import simulate_frame
from stream3d.specimen.geometry import slab_profile


@pytest.fixture(scope="module")
def two_discs():
    """Two 80 Å discs at different heights, imaged with texture and shot noise."""
    return two_disc_frame()


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
    # Inside one row of REGION cells, its halves in two columns of them; its ends 40 px apart
    # across the frame's periodic edge, beyond the LOWPASS (closer, they blur into one another).
    bar[30:54, 20:108] = True
    truth = (slab_profile(SHAPE[0], s.slice_thickness, 260.0, 340.0)[:, None, None]
             * bar[None]).astype(np.float32)
    frame, _ = simulate_frame(truth, CONFIG, seed=7)
    scale = np.where(np.arange(SHAPE[2])[None, :] < 64, 1 / 1.5, 1.0) * np.ones(SHAPE[1:])
    factors = _factors(truth, frame, scale)
    assert factors[42, 30] >= 1.3 and 0.9 <= factors[42, 98] <= 1.15
    along = factors[42, 20:108]
    assert np.abs(np.diff(along)).max() < 0.1  # blended over BLEND Å: no seam


def test_a_start_with_soft_edges_keeps_its_mass(two_discs):
    """Pop-out's thickness map is the truth blurred by its resolution (2.5 Å; the Wiener
    inversion blurs a little more): soft edges, the mass right. A soft edge has less contrast
    at high k than the true step, and a factor fitted there made up for it with material
    (1.3-1.4x on the accuracy suite's discs, mass ratios 1.1-1.3). Fitted where the blur leaves
    the contrast alone (the LOWPASS), the factor keeps the mass."""
    truth, frame = two_discs
    s = CONFIG.sample
    slabs = column_slabs(truth * s.potential, potential=s.potential, dz=s.slice_thickness)
    true = slabs.thickness.sum(axis=0)
    soft = ndimage.gaussian_filter(true, 2.5 / s.pixel_size)
    soft = np.where(soft > 0.05 * true.max(), soft, 0.0)
    scale = np.divide(soft, true, out=np.zeros_like(soft), where=true > 0)
    # The blurred map outside the discs: the same slabs, grown into their rims.
    centre = ndimage.grey_dilation(np.nan_to_num(slabs.centre[0]), size=(9, 9))
    model = ImagingModel.from_config(CONFIG)
    thickness = torch.as_tensor(np.stack([soft, np.zeros_like(soft)]))
    middle = torch.as_tensor(np.stack([np.where(soft > 0, centre, np.nan)] * 2))

    def build(t: torch.Tensor) -> torch.Tensor:
        return slab_volume(middle, t, nz=SHAPE[0], dz=model.dz, potential=model.potential)

    factors = object_factors(thickness, build, model.intensity,
                             measured_intensity(frame, model, torch.device("cpu")),
                             pixel_size=s.pixel_size, pad=8).numpy()
    for y, x in ((40, 40), (88, 88)):
        own = ndimage.label(soft > 0)[0] == ndimage.label(soft > 0)[0][y, x]
        mass = float((soft * factors)[own].sum() / true[own].sum())
        assert 0.85 <= mass <= 1.15, (y, x, mass, factors[y, x])
    assert scale[40, 40] == pytest.approx(1.0, abs=0.01)  # the blur left the middle alone
