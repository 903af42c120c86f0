"""Amorphous texture: the definition (filtered white noise), its correlation length, and the
potential built from it, computed in float32 without full-size float64 copies."""

from __future__ import annotations

import numpy as np
import pytest

from stream3d.config import Sample
from stream3d.specimen import amorphous_texture, occupancy_to_potential


def _reference(shape, sampling, length, seed):
    """The definition in float64: white noise x exp(-(pi L k)^2 / 2) per axis, unit rms."""
    spectrum = np.fft.fftn(np.random.default_rng(seed).standard_normal(shape))
    for axis, (n, d) in enumerate(zip(shape, sampling)):
        k = np.fft.fftfreq(n, d=d).reshape([-1 if a == axis else 1 for a in range(3)])
        spectrum *= np.exp(-((np.pi * length * k) ** 2) / 2)
    field = np.fft.ifftn(spectrum).real
    field -= field.mean()
    return field / field.std()


@pytest.mark.parametrize("shape, sampling", [((6, 48, 64), (20.0, 1.0, 1.0)),
                                             ((5, 33, 47), (7.0, 0.8, 1.3))])
def test_texture_is_the_filtered_noise_of_its_seed(shape, sampling):
    field = amorphous_texture(shape, sampling, length=2.0, rng=np.random.default_rng(9))
    assert field.dtype == np.float32 and field.shape == shape
    np.testing.assert_allclose(field, _reference(shape, sampling, 2.0, 9), atol=2e-5)
    assert field.mean() == pytest.approx(0.0, abs=1e-6) and field.std() == pytest.approx(1.0)


def test_texture_correlation_length():
    # Power exp(-(pi L k)^2) <-> autocorrelation exp(-(x / L)^2): e^-1 at a lag of L.
    field = amorphous_texture((4, 256, 256), (20.0, 1.0, 1.0), length=3.0,
                              rng=np.random.default_rng(2))
    for lag in (1, 3, 6):
        corr = np.mean(field * np.roll(field, lag, axis=-1))
        assert corr == pytest.approx(np.exp(-(lag / 3.0) ** 2), abs=0.03)


def test_potential_from_a_given_field_equals_the_drawn_one():
    sample = Sample(potential=4.0, absorption=0.2, texture=0.3, slices=4)
    occupancy = np.zeros((4, 32, 32), np.float32)
    occupancy[1:3, 8:24, 8:24] = 1.0
    occupancy[3, 8:24, 8:24] = 0.25
    drawn = occupancy_to_potential(occupancy, sample, rng=np.random.default_rng(1))
    field = amorphous_texture((4, 32, 32), sample.sampling, length=2.0, rng=np.random.default_rng(1))
    given = occupancy_to_potential(occupancy, sample, field=field)
    np.testing.assert_array_equal(drawn, given)
    assert given.dtype == np.complex64
    expected = 4.0 * occupancy * (1 + 0.3 * field)
    np.testing.assert_allclose(given.real, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(given.imag, 0.2 * expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="rng or field"):
        occupancy_to_potential(occupancy, sample)
