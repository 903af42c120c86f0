"""The lens against the weak-phase-object theory, term by term (Kirkland, ch. 3).

A weak phase grating exp(i a cos(2 pi k x)) (a << 1) images as
    I(x) = 1 + 2 a A(k) E(k) sin chi(k) cos(2 pi k x) + O(a^2),
chi(k) = -pi lambda defocus k^2 + pi/2 Cs lambda^3 k^4 (defocus > 0 underfocus, DESIGN.md),
A the hard aperture (lambda k <= aperture), E(k) = exp(-(pi lambda Delta k^2)^2 / 4) the
temporal-coherence envelope of a focal spread Delta (1/e half-width). Each test fails when its
term is removed, mis-scaled or its sign flipped; none compares the code with itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stream3d.physics import image, wavelength

E300 = 300e3
N, D = 128, 1.0  # px, Å/px
A = 1e-3  # rad, the grating's phase amplitude: second-order terms ~1e-6


def _cosine_coefficient(energy: float, k_index: int, **lens) -> float:
    """The cos(2 pi k x) coefficient of the image of a weak phase grating along x at
    k = k_index / (N D) Å^-1."""
    x = torch.arange(N, dtype=torch.float64) * D
    phase = A * torch.cos(2 * math.pi * k_index / (N * D) * x)
    wave = torch.exp(1j * phase)[None, :].expand(N, N).contiguous()
    intensity = image(wave, sampling=(1.0, D, D), energy=energy, **lens)
    spectrum = torch.fft.fft(intensity[0] - 1.0) / N
    return float(2 * spectrum[k_index].real)


def _theory(energy: float, k: float, *, defocus: float, cs: float, aperture: float,
            focal_spread: float) -> float:
    lam = wavelength(energy)
    chi = -math.pi * lam * defocus * k**2 + 0.5 * math.pi * cs * lam**3 * k**4
    passes = aperture <= 0 or lam * k <= aperture * 1e-3
    envelope = math.exp(-((math.pi * lam * focal_spread * k**2) ** 2) / 4.0)
    return 2 * A * passes * envelope * math.sin(chi)


@pytest.mark.parametrize("k_index", [6, 10, 16, 24])
def test_weak_phase_contrast_has_its_sign_and_size(k_index):
    # Underfocus (defocus > 0) with Cs: the sign of every coefficient follows sin chi.
    lens = dict(defocus=2000.0, cs=1e7, aperture=0.0, focal_spread=0.0)
    k = k_index / (N * D)
    measured = _cosine_coefficient(E300, k_index, **lens)
    assert measured == pytest.approx(_theory(E300, k, **lens), rel=1e-3, abs=1e-8)
    assert abs(measured) > 1e-4  # not a zero of the rings: the check has teeth


def test_aperture_inside_the_band_cuts_exactly_at_its_angle():
    # 2 mrad at 300 kV: lambda k = 2e-3 at k = 0.1016 Å^-1, inside the 2/3-Nyquist band.
    lens = dict(defocus=2000.0, cs=1e7, aperture=2.0, focal_spread=0.0)
    kmax = 2e-3 / wavelength(E300)
    inside, outside = 12, 14  # 0.094 and 0.109 Å^-1
    assert inside / (N * D) < kmax < outside / (N * D)
    assert _cosine_coefficient(E300, inside, **lens) == pytest.approx(
        _theory(E300, inside / (N * D), **lens), rel=1e-3)
    assert abs(_theory(E300, outside / (N * D), **{**lens, "aperture": 0.0})) > 5e-4
    assert abs(_cosine_coefficient(E300, outside, **lens)) < 1e-7


@pytest.mark.parametrize("focal_spread", [100.0, 300.0])
def test_temporal_envelope_damps_by_its_analytic_factor(focal_spread):
    lens = dict(defocus=2000.0, cs=1e7, aperture=0.0)
    k_index = 30  # 0.234 Å^-1
    k = k_index / (N * D)
    damped = _cosine_coefficient(E300, k_index, focal_spread=focal_spread, **lens)
    coherent = _cosine_coefficient(E300, k_index, focal_spread=0.0, **lens)
    expected = math.exp(-((math.pi * wavelength(E300) * focal_spread * k**2) ** 2) / 4.0)
    assert damped / coherent == pytest.approx(expected, rel=1e-4)
    assert expected < 0.98  # strong enough that a 10x weaker envelope is far outside 1e-4


def test_overfocus_inverts_the_contrast_of_underfocus():
    # Without Cs, chi is odd in defocus: the coefficients change sign, not size.
    k_index = 10
    under = _cosine_coefficient(E300, k_index, defocus=1500.0, cs=0.0, aperture=0.0)
    over = _cosine_coefficient(E300, k_index, defocus=-1500.0, cs=0.0, aperture=0.0)
    assert under < 0 < over  # a positive phase (potential) is dark in underfocus
    assert over == pytest.approx(-under, rel=1e-6)
    assert np.isclose(under, _theory(E300, k_index / (N * D), defocus=1500.0, cs=0.0,
                                     aperture=0.0, focal_spread=0.0), rtol=1e-3)
