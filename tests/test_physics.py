"""Physics of the forward model, checked against analytic results (Kirkland; DESIGN.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stream3d.physics import (
    band_limit, chi, detect, image, interaction_constant, k_squared, multislice, propagator,
    transmission, wavelength,
)

E300, E200 = 300e3, 200e3


def smooth_potential(shape, *, amplitude, cutoff_px, seed=0, dtype=torch.float64):
    """Real random potential (V) whose spectrum vanishes beyond ``cutoff_px`` cycles/frame."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    low = (ky[:, None] ** 2 + kx[None, :] ** 2) <= cutoff_px**2
    spec = np.fft.fft2(rng.standard_normal(shape)) * low
    v = np.fft.ifft2(spec).real
    v *= amplitude / np.abs(v).max()
    return torch.tensor(v, dtype=dtype)


@pytest.mark.parametrize(
    "energy, lam, sigma",
    [(E300, 0.0196875, 6.52616e-4), (E200, 0.0250793, 7.28840e-4)],
)
def test_wavelength_and_interaction_constant(energy, lam, sigma):
    assert wavelength(energy) == pytest.approx(lam, rel=1e-5)
    assert interaction_constant(energy) == pytest.approx(sigma, rel=1e-5)


@pytest.mark.parametrize("dtype, cdtype", [(torch.float32, torch.complex64),
                                           (torch.float64, torch.complex128)])
def test_vacuum_image_is_one(dtype, cdtype):
    v = torch.zeros(7, 32, 48, dtype=dtype)
    wave = multislice(v, sampling=(10.0, 0.5, 0.7), energy=E300)
    assert wave.dtype == cdtype and wave.shape == (32, 48)
    img = image(wave, sampling=(10.0, 0.5, 0.7), energy=E300, defocus=800.0, cs=1e7,
                aperture=8.0, focal_spread=40.0)
    assert img.dtype == dtype
    torch.testing.assert_close(img, torch.ones_like(img), atol=1e-6, rtol=0)


# derandomize: the same examples on every machine; a random strong-phase draw can push a little
# of the wave past the band limit (1e-9 of the intensity), which is not what this checks.
@settings(max_examples=15, deadline=None, derandomize=True)
@given(nz=st.integers(1, 40), dz=st.floats(1.0, 50.0), amplitude=st.floats(0.1, 20.0),
       seed=st.integers(0, 10_000))
def test_intensity_conserved_without_absorption_or_aperture(nz, dz, amplitude, seed):
    # A smooth potential whose transmission stays inside the 2/3 band limit: the propagator is
    # then unitary, so the mean intensity stays exactly 1 through any number of slices.
    v = smooth_potential((nz, 32, 32), amplitude=amplitude, cutoff_px=2, seed=seed)
    wave = multislice(v, sampling=(dz, 1.0, 1.0), energy=E300)
    assert float((wave.abs() ** 2).mean()) == pytest.approx(1.0, abs=1e-9)
    img = image(wave, sampling=(dz, 1.0, 1.0), energy=E300, defocus=1234.0, cs=1e7,
                aperture=None)
    assert float(img.mean()) == pytest.approx(1.0, abs=1e-9)


def test_absorption_removes_intensity_at_the_analytic_rate():
    energy, dz, nz, v_imag = E300, 5.0, 10, 2.0
    v = torch.zeros(nz, 16, 16, dtype=torch.complex128) + 1j * v_imag
    wave = multislice(v, sampling=(dz, 1.0, 1.0), energy=energy)
    expected = math.exp(-2 * interaction_constant(energy) * v_imag * dz * nz)
    assert float((wave.abs() ** 2).mean()) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("defocus", [600.0, -600.0, 2500.0])
def test_weak_phase_object_follows_2_sin_chi(defocus):
    # I(k) = delta(k) + 2 sin(chi(k)) sigma Vdz(k) for a weak phase object. One slice of dz is
    # propagated dz to the exit plane, so it is seen at effective defocus (defocus - dz).
    n, d, dz, energy, cs = 128, 0.5, 1.0, E300, 1e7
    v = smooth_potential((1, n, n), amplitude=1e-2, cutoff_px=40, seed=3)
    wave = multislice(v, sampling=(dz, d, d), energy=energy)
    img = image(wave, sampling=(dz, d, d), energy=energy, defocus=defocus, cs=cs, aperture=None)
    k2 = k_squared((n, n), (d, d), torch.float64, torch.device("cpu"))
    phase_k = torch.fft.fft2(v[0]) * interaction_constant(energy) * dz
    expected = 2 * torch.sin(chi(k2, energy=energy, defocus=defocus - dz, cs=cs)) * phase_k
    got = torch.fft.fft2(img - 1.0)
    strong = (phase_k.abs() > 0.05 * phase_k.abs().max()) & (k2 > 0)
    assert int(strong.sum()) > 200
    err = (got - expected)[strong].abs() / phase_k[strong].abs()
    assert float(err.max()) < 2e-3  # quadratic terms of a 1e-5-rad phase and band edges


def test_positive_phase_is_dark_in_underfocus_bright_in_overfocus():
    # Sign of defocus: underfocus (defocus > 0) makes chi < 0 at low k, so a positive-phase
    # blob images dark; overfocus images it bright.
    n, d = 128, 1.0
    yy, xx = np.mgrid[:n, :n] - n / 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * 6.0**2))
    v = torch.tensor(blob[None] * 100.0, dtype=torch.float64)  # 0.065 rad peak phase
    wave = multislice(v, sampling=(1.0, d, d), energy=E300)
    under = image(wave, sampling=(1.0, d, d), energy=E300, defocus=3000.0, cs=0.0, aperture=None)
    over = image(wave, sampling=(1.0, d, d), energy=E300, defocus=-3000.0, cs=0.0, aperture=None)
    assert float(under[n // 2, n // 2]) < 0.999
    assert float(over[n // 2, n // 2]) > 1.001


@pytest.mark.parametrize("slice_index", [0, 3, 9])
def test_object_at_height_h_equals_object_at_exit_plane_at_defocus_minus_h(slice_index):
    # A strong thin object in slice i of nz sits h = (nz - i) dz above the exit plane.
    nz, n, d, dz, energy = 12, 64, 0.5, 25.0, E300
    obj = smooth_potential((1, n, n), amplitude=30.0, cutoff_px=12, seed=5)
    obj = obj + 1j * 0.1 * obj.abs()
    v = torch.zeros(nz, n, n, dtype=torch.complex128)
    v[slice_index] = obj[0]
    h = (nz - slice_index) * dz
    optics = dict(energy=energy, cs=1e7, aperture=20.0, focal_spread=20.0)
    defocus = 900.0
    stacked = image(multislice(v, sampling=(dz, d, d), **{"energy": energy}),
                    sampling=(dz, d, d), defocus=defocus, **optics)
    at_exit = transmission(obj, sampling=(dz, d, d), energy=energy)[0]
    moved = image(at_exit, sampling=(dz, d, d), defocus=defocus - h, **optics)
    torch.testing.assert_close(stacked, moved, atol=1e-10, rtol=0)


def test_gradcheck_through_multislice_and_lens():
    torch.manual_seed(0)
    v = (torch.rand(3, 8, 8, dtype=torch.float64) * 5).requires_grad_()

    def f(pot):
        wave = multislice(pot, sampling=(10.0, 1.0, 1.0), energy=E300)
        return image(wave, sampling=(10.0, 1.0, 1.0), energy=E300, defocus=200.0, cs=1e7,
                     aperture=15.0, focal_spread=30.0)

    assert torch.autograd.gradcheck(f, (v,), eps=1e-6, atol=1e-6)


def test_propagator_is_cached_not_rebuilt_per_slice():
    propagator.cache_clear()
    v = torch.zeros(30, 16, 16)
    multislice(v, sampling=(3.0, 1.0, 1.0), energy=E300)
    multislice(v, sampling=(3.0, 1.0, 1.0), energy=E300)
    info = propagator.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_band_limit_keeps_two_thirds_of_nyquist():
    mask = band_limit((64, 64), (0.5, 0.5), torch.float64, torch.device("cpu"))
    k = np.fft.fftfreq(64, 0.5)
    # Along kx: kept up to 2/3 * 1 Å^-1 = 0.667 Å^-1, removed above.
    kept = k[mask[0].numpy() > 0]
    assert np.abs(kept).max() == pytest.approx(0.65625) and np.abs(k).max() == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: multislice(torch.zeros(8, 8), sampling=(1, 1, 1), energy=E300), "3 dimensions"),
        (lambda: multislice(torch.zeros(2, 8, 8), sampling=(1, -1, 1), energy=E300), "sampling"),
        (lambda: multislice(torch.zeros(2, 8, 8), sampling=(1, 1), energy=E300), "sampling"),
        (lambda: multislice(torch.full((2, 8, 8), float("nan")), sampling=(1, 1, 1),
                            energy=E300), "NaN"),
        (lambda: multislice(torch.zeros(2, 8, 8), sampling=(1, 1, 1), energy=-5), "energy"),
        (lambda: multislice(np.zeros((2, 8, 8)), sampling=(1, 1, 1), energy=E300), "Tensor"),
        (lambda: image(torch.ones(2, 8, 8, dtype=torch.complex64), sampling=(1, 1, 1),
                       energy=E300, defocus=0, cs=0, aperture=None), "2 dimensions"),
        (lambda: image(torch.ones(8, 8, dtype=torch.complex64), sampling=(1, 1, 1),
                       energy=E300, defocus=float("inf"), cs=0, aperture=None), "defocus"),
        (lambda: image(torch.ones(8, 8, dtype=torch.complex64), sampling=(1, 1, 1),
                       energy=E300, defocus=0, cs=0, aperture=-3), "aperture"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_detector_counts_have_the_dose_mean_and_poisson_variance():
    dose, px = 500.0, 0.8
    counts = detect(torch.ones(256, 256, dtype=torch.float64), dose=dose, pixel_size=px,
                    generator=torch.Generator().manual_seed(1))
    mean_expected = dose * px**2
    n = counts.numel()
    assert float(counts.mean()) == pytest.approx(mean_expected, abs=5 * math.sqrt(mean_expected / n))
    assert float(counts.var()) == pytest.approx(mean_expected, rel=0.03)
    assert bool((counts == counts.round()).all())
    with pytest.raises(ValueError, match="dose"):
        detect(torch.ones(4, 4), dose=-1, pixel_size=1.0)
