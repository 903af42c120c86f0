"""Two-fold astigmatism in the lens: DESIGN.md's convention, analytic and end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stream3d import config
from stream3d.physics import (
    astigmatic_chi, chi, forward, image, interaction_constant, multislice, transfer_function,
    wavelength,
)
from stream3d.refine.model import ImagingModel
from stream3d.simulate import simulate_intensity

E300 = 300e3
CPU = torch.device("cpu")

# (row, column) FFT indices on a (64, 96) grid at (dy, dx) = (0.5, 0.75) Å, the direction phi of
# k from +x toward +y, and cos 2(phi - 30 deg) written out by hand. Non-square pixels and grid
# make a swapped axis order visible; +-45 degrees expose a flipped angle sign; 45 degrees also
# tells cos 2x from cos x.
DIRECTIONS = [
    ((0, 5), 0.0, 0.5),  # along +x: cos(-60)
    ((5, 0), 90.0, -0.5),  # along +y: cos(120)
    ((4, 9), 45.0, math.cos(math.radians(30))),  # ky = 4/32 = kx = 9/72 Å^-1
    ((-4, 9), -45.0, math.cos(math.radians(-150))),
    ((4, -9), 135.0, math.cos(math.radians(210))),
]


@pytest.mark.parametrize("index, phi, cos2", DIRECTIONS)
def test_transfer_function_phase_along_directions(index, phi, cos2):
    shape, sampling = (64, 96), (0.5, 0.75)
    defocus, cs, c12, phi12 = 900.0, 1e7, 200.0, 30.0
    h = transfer_function(shape, sampling, E300, defocus, cs, None, 0.0, torch.complex128, CPU,
                          c12, phi12)
    i, j = index
    ky, kx = i / (shape[0] * sampling[0]), j / (shape[1] * sampling[1])
    assert math.degrees(math.atan2(ky, kx)) == pytest.approx(phi)
    k2, lam = ky * ky + kx * kx, wavelength(E300)
    expected = (-math.pi * lam * (defocus - c12 * cos2) * k2
                + 0.5 * math.pi * cs * lam**3 * k2 * k2)
    got = complex(h[i, j])
    assert got.real == pytest.approx(math.cos(expected), abs=1e-12)
    assert got.imag == pytest.approx(-math.sin(expected), abs=1e-12)
    # And astigmatic_chi alone, on a plain float pair:
    assert astigmatic_chi(ky, kx, energy=E300, defocus=defocus, cs=cs, astigmatism=c12,
                          astigmatism_angle=phi12) == pytest.approx(expected, rel=1e-12)


def test_astigmatism_angle_is_periodic_in_180_degrees_and_zero_is_isotropic():
    ky = torch.fft.fftfreq(32, d=1.0, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(48, d=1.0, dtype=torch.float64)[None, :]
    kw = dict(energy=E300, defocus=1500.0, cs=1e7)
    a = astigmatic_chi(ky, kx, astigmatism=80.0, astigmatism_angle=20.0, **kw)
    b = astigmatic_chi(ky, kx, astigmatism=80.0, astigmatism_angle=200.0, **kw)
    c = astigmatic_chi(ky, kx, astigmatism=80.0, astigmatism_angle=110.0, **kw)
    iso = chi(ky**2 + kx**2, **kw)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # A quarter turn swaps the most and least underfocused directions: the two average to iso.
    torch.testing.assert_close((a + c) / 2, iso, rtol=1e-12, atol=1e-12)
    assert float((a - iso).abs().max()) > 0.5  # rad: 80 Å of C12 is far from nothing
    torch.testing.assert_close(astigmatic_chi(ky, kx, **kw), iso)


def test_weak_phase_object_follows_2_sin_of_the_astigmatic_chi():
    # I(k) = delta + 2 sin(chi(k)) sigma V dz(k): with astigmatism the phase is the 2D chi; the
    # isotropic chi (astigmatism dropped) misses it by far.
    n, d, dz, defocus, cs, c12, phi12 = 128, 0.5, 1.0, 1200.0, 1e7, 60.0, 35.0
    rng = np.random.default_rng(5)
    k = np.fft.fftfreq(n) * n
    low = (k[:, None] ** 2 + k[None, :] ** 2) <= 40**2
    v = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * low).real
    v = torch.tensor(1e-2 * v / np.abs(v).max(), dtype=torch.float64)[None]
    wave = multislice(v, sampling=(dz, d, d), energy=E300)
    img = image(wave, sampling=(dz, d, d), energy=E300, defocus=defocus, cs=cs, aperture=None,
                astigmatism=c12, astigmatism_angle=phi12)
    ky = torch.fft.fftfreq(n, d=d, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(n, d=d, dtype=torch.float64)[None, :]
    phase_k = torch.fft.fft2(v[0]) * interaction_constant(E300) * dz
    got = torch.fft.fft2(img - 1.0)
    strong = (phase_k.abs() > 0.05 * phase_k.abs().max()) & ((ky**2 + kx**2) > 0)
    assert int(strong.sum()) > 200

    def error(astigmatism):
        c = astigmatic_chi(ky, kx, energy=E300, defocus=defocus - dz, cs=cs,
                           astigmatism=astigmatism, astigmatism_angle=phi12)
        expected = 2 * torch.sin(c) * phase_k
        return float(((got - expected)[strong].abs() / phase_k[strong].abs()).max())

    assert error(c12) < 2e-3
    assert error(0.0) > 0.3


def test_defaults_are_no_astigmatism_and_bad_values_are_one_line_errors():
    gen = torch.Generator().manual_seed(1)
    wave = torch.exp(1j * torch.rand(32, 32, dtype=torch.float64, generator=gen))
    kw = dict(sampling=(1.0, 1.0), energy=E300, defocus=800.0, cs=1e7, aperture=None)
    torch.testing.assert_close(image(wave, **kw), image(wave, astigmatism=0.0,
                                                        astigmatism_angle=57.0, **kw))
    with pytest.raises(ValueError, match="astigmatism must be finite and >= 0"):
        image(wave, astigmatism=-5.0, **kw)
    with pytest.raises(ValueError, match="astigmatism_angle must be finite"):
        image(wave, astigmatism=5.0, astigmatism_angle=float("nan"), **kw)


def _film_config(c12: float, phi12: float) -> config.Config:
    return config.load(None, ["sample.slices=2", f"microscope.astigmatism={c12}",
                              f"microscope.astigmatism_angle={phi12}"])


def test_simulate_and_the_refinement_model_image_with_the_configured_astigmatism():
    rng = np.random.default_rng(2)
    v = torch.tensor(rng.random((2, 48, 48)), dtype=torch.float32)
    cfg = _film_config(70.0, 15.0)
    m, s = cfg.microscope, cfg.sample
    lens = dict(sampling=s.sampling, energy=m.energy, defocus=m.defocus, cs=m.cs,
                aperture=m.aperture, focal_spread=m.focal_spread)
    with_astig = forward(v, astigmatism=70.0, astigmatism_angle=15.0, **lens)
    without = forward(v, **lens)
    assert float((with_astig - without).abs().max()) > 1e-3
    np.testing.assert_allclose(simulate_intensity(v, cfg), with_astig.numpy(), atol=1e-6)
    model = ImagingModel.from_config(cfg)
    assert (model.astigmatism, model.astigmatism_angle) == (70.0, 15.0)
    torch.testing.assert_close(model.intensity_of_complex(v.to(torch.complex64)), with_astig)


def test_config_keys_and_their_checks():
    cfg = _film_config(60.0, 120.0)
    assert (cfg.microscope.astigmatism, cfg.microscope.astigmatism_angle) == (60.0, 120.0)
    assert config.Config().microscope.astigmatism == 0.0
    with pytest.raises(config.ConfigError, match="microscope.astigmatism"):
        config.load(None, ["microscope.astigmatism=-1"])
    with pytest.raises(config.ConfigError, match="microscope.astigmatism_angle"):
        config.load(None, ["microscope.astigmatism_angle=inf"])


@pytest.mark.parametrize("phi12", [0.0, 30.0, 120.0])
def test_lens_matches_abtem_apply_ctf(phi12):
    # abTEM's arrays are (x, y): our axis 0 is its x, so its angle runs from our y toward our
    # x and phi12(here) = 90 deg - phi12(abTEM) (DESIGN.md).
    abtem = pytest.importorskip("abtem")
    from stream3d.physics import image_wave

    rng = np.random.default_rng(0)
    (ny, nx), (dy, dx) = (64, 96), (0.5, 0.75)
    psi = np.exp(1j * 0.1 * rng.standard_normal((ny, nx)))
    waves = abtem.Waves(psi, energy=E300, sampling=(dy, dx))
    theirs = waves.apply_ctf(defocus=900.0, Cs=1e7, astigmatism=200.0,
                             astigmatism_angle=math.radians(90.0 - phi12)).compute().array
    kw = dict(sampling=(dy, dx), energy=E300, defocus=900.0, cs=1e7, aperture=None,
              astigmatism=200.0)
    ours = image_wave(torch.tensor(psi), astigmatism_angle=phi12, **kw).numpy()
    assert np.abs(theirs - ours).max() < 1e-4
    mirrored = image_wave(torch.tensor(psi), astigmatism_angle=90.0 - phi12 + 45.0, **kw).numpy()
    assert np.abs(theirs - mirrored).max() > 0.1
