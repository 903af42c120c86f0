"""The texture's power spectrum: the simulator's families, and pop-out measuring it from the
frame instead of reading it from the config (a real specimen's is never known)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from stream3d.config import Config
from stream3d.popout import api, popout, texture_spectrum
from stream3d.popout.ctf_model import Optics, lens_envelope, ring_phase, search_defoci
from stream3d.popout.patches import patch_grid, windowed_patches
from stream3d.popout.spectrum import radial_bins, radial_profiles
from stream3d.simulate import simulate_frame
from stream3d.specimen import amorphous_texture, three_discs
from stream3d.specimen.texture import texture_power

CONFIG = Config()
P = CONFIG.popout


def test_texture_families_have_their_defining_shapes():
    k = np.linspace(0.0, 0.5, 501)
    np.testing.assert_allclose(texture_power(k, length=2.0), np.exp(-(np.pi * 2.0 * k) ** 2))
    power_law = texture_power(k, length=2.0, spectrum="powerlaw")
    # (1 + (2 pi l k)^2)^-1.5: k^-3 far out, so doubling k costs 8x
    assert power_law[400] / power_law[200] == pytest.approx(
        ((1 + (4 * np.pi * 0.2) ** 2) / (1 + (4 * np.pi * 0.4) ** 2)) ** 1.5)
    peaked = texture_power(k, length=2.0, spectrum="peaked")
    # d/dk [k^2 exp(-(k - kp)^2 / 2w^2)] = 0 at k = kp (1 + sqrt 3) / 2 for w = kp / 2
    assert k[np.argmax(peaked)] == pytest.approx(0.35 * (1 + np.sqrt(3)) / 2, abs=1e-3)
    assert peaked[40] < 0.1 * peaked.max()  # little power at 0.04 Å^-1, like real atoms
    with pytest.raises(ValueError, match="unknown texture spectrum"):
        texture_power(k, length=2.0, spectrum="lorentzian")


@pytest.mark.parametrize("spectrum", ["powerlaw", "peaked"])
def test_field_power_spectrum_follows_its_family(spectrum):
    shape, sampling = (1, 256, 256), (20.0, 1.0, 1.0)
    field = amorphous_texture(shape, sampling, length=2.0, rng=np.random.default_rng(3),
                              spectrum=spectrum)
    assert field.dtype == np.float32 and field.std() == pytest.approx(1.0, rel=1e-4)
    power = np.abs(np.fft.fft2(field[0])) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    expected = texture_power(k, length=2.0, spectrum=spectrum)
    for lo, hi in ((0.05, 0.1), (0.15, 0.2), (0.3, 0.35)):  # Å^-1 annuli
        ring = (k >= lo) & (k < hi)
        ratio = power[ring].mean() / expected[ring].mean()
        ref = power[(k >= 0.15) & (k < 0.2)].mean() / expected[(k >= 0.15) & (k < 0.2)].mean()
        assert ratio / ref == pytest.approx(1.0, rel=0.1)


def test_smooth_fit_holds_a_gaussian_texture_exactly():
    k = np.linspace(0.04, 0.3, 30)
    value = 7.0 * np.exp(-(np.pi * 2.5 * k) ** 2)
    tex = texture_spectrum.smooth_fit(k, value, np.ones_like(k), 0.04, 0.3)
    estimate = texture_spectrum.evaluate(tex, k)
    np.testing.assert_allclose(estimate / estimate[0], value / value[0], rtol=1e-6)
    # beyond the band: the edge value, never an extrapolated polynomial
    assert texture_spectrum.evaluate(tex, np.array([0.5]))[0] == pytest.approx(estimate[-1])
    assert texture_spectrum.evaluate(texture_spectrum.FLAT, k).tolist() == [1.0] * k.size


def _textured_image(length: float, defocus: float, n: int = 256, seed: int = 0) -> np.ndarray:
    """Intensity 1 + a phase-contrast texture whose power is exactly S(k) T(k) sin^2(chi):
    S a Gaussian of ``length`` Å, one effective ``defocus`` Å everywhere."""
    optics = Optics.from_config(CONFIG)
    ky = np.fft.fftfreq(n, d=optics.pixel_size)
    k = np.sqrt(ky[:, None] ** 2 + ky[None, :] ** 2)
    amplitude = np.sqrt(texture_power(k, length=length) * lens_envelope(k, optics))
    amplitude *= np.abs(np.sin(ring_phase(k, defocus, optics)))
    noise = np.random.default_rng(seed).standard_normal((n, n))
    texture = np.fft.ifft2(np.fft.fft2(noise) * amplitude).real
    return 1.0 + 0.05 * texture / texture.std()


def _fitted_defocus(image: np.ndarray, texture: tuple[float, ...] | None) -> tuple[float, tuple]:
    """Median fitted defocus (Å) of the image's patches, pop-out's fit with the texture it
    measures (``texture`` None) or one held fixed, and the texture spectrum used."""
    shape = image.shape
    setup = api._setup(shape, CONFIG)
    bins = radial_bins(P.patch, setup.optics.pixel_size, setup.k_low, setup.k_high)
    grid = patch_grid(shape, P.patch, P.step)
    blocks = [radial_profiles(windowed_patches(image, grid, (0, grid.grid_shape[0])), bins)]
    counts_per_unit = 1e12  # no shot noise: the texture's own speckle is the only noise
    if texture is None:
        fits, _, optics, _ = api._fit_all(blocks, setup, counts_per_unit, float(image.mean()))
        return float(np.median(fits.defocus)), optics.texture
    from stream3d.popout.ctf_fit import fit_design, fit_profiles
    from stream3d.popout.ctf_model import thon_model
    optics = replace(setup.optics, texture=texture)
    model = thon_model(setup.defoci, P.patch, optics, setup.k_low, setup.k_high)
    profiles = np.concatenate(blocks)
    fits = fit_profiles(profiles, fit_design(model, bins.counts, 0.0, 1.0))
    return float(np.median(fits.defocus)), texture


@pytest.mark.parametrize("length", [1.2, 2.0, 3.5])
def test_measured_texture_follows_the_specimens_spectrum(length):
    # Whatever the texture's fall-off, the spectrum pop-out measures follows it (within a
    # factor e^0.5 where it holds 1 % of the band's power or more) and the rings are fitted at
    # the true defocus.
    defocus = 1700.0
    measured, tex = _fitted_defocus(_textured_image(length, defocus), None)
    band = np.linspace(P.k_low, P.k_high, 20)
    truth = texture_power(band, length=length)
    estimate = texture_spectrum.evaluate(tex, band)
    strong = truth / truth[0] >= 0.01
    log_ratio = np.log(estimate / estimate[0]) - np.log(truth / truth[0])
    assert np.abs(log_ratio[strong]).max() < 0.5
    assert measured == pytest.approx(defocus, abs=5.0)


def test_a_fixed_texture_spectrum_moves_the_rings():
    # A coarse texture (3.5 Å) fitted with a fixed flat spectrum: the fit trades ring position
    # for ring power and misses the defocus; measured, it does not.
    defocus = 1700.0
    image = _textured_image(3.5, defocus)
    measured, _ = _fitted_defocus(image, None)
    fixed, _ = _fitted_defocus(image, texture_spectrum.FLAT)
    assert abs(fixed - defocus) > 10.0
    assert abs(measured - defocus) < 5.0


def test_popout_reads_no_texture_from_the_config():
    # DESIGN.md: texture keys belong to the simulator alone; pop-out measures the texture.
    occ = three_discs((CONFIG.sample.slices, 128, 128), CONFIG.sample.sampling)
    frame, _ = simulate_frame(occ, CONFIG, seed=5)
    a = popout(frame, CONFIG)
    other = CONFIG.replace("sample", texture=0.6, texture_length=4.0, texture_spectrum="peaked")
    b = popout(frame, other)
    np.testing.assert_array_equal(a.height, b.height)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert search_defoci(CONFIG).size > 0  # the search itself is the lens's, not the texture's
