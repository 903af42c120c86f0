"""Pop-out building blocks against exact answers: the Thon-ring fit on model spectra, ring
counts near Scherzer focus, thickness deconvolution of a linear image, maps and volume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from stream3d.config import Config
from stream3d.physics import chi, interaction_constant, wavelength
from stream3d.popout.ctf_fit import fit_design, fit_profiles
from stream3d.popout.ctf_model import (Optics, delocalisation, ring_count, search_defoci,
                                       thon_model)
from stream3d.popout.maps import fill_nearest, patch_confidence, spread
from stream3d.popout.patches import patch_grid, windowed_patches
from stream3d.popout.spectrum import radial_bins, radial_profiles
from stream3d.popout.thickness import thickness_filter, thickness_map
from stream3d.popout.volume import build_volume, column_bounds
from stream3d.specimen import column_height, column_thickness

CONFIG = Config()
OPTICS = Optics.from_config(CONFIG)
P = CONFIG.popout


def _model(defoci):
    return thon_model(tuple(float(d) for d in defoci), P.patch, OPTICS, P.k_low, P.k_high)


@pytest.mark.parametrize("defocus", [1234.5, 1500.0, 1777.7, 2081.2])
def test_fit_recovers_the_defocus_of_a_model_spectrum_between_grid_points(defocus):
    truth = _model([defocus])
    bins = radial_bins(P.patch, OPTICS.pixel_size, P.k_low, P.k_high)
    noise, amplitude = 0.3, 20.0
    profiles = noise + 0.5 * truth.level[None] + amplitude * truth.rings  # (1, bins)
    grid = _model(search_defoci(CONFIG))
    fits = fit_profiles(profiles, fit_design(grid, bins.counts, noise, amplitude))
    assert fits.defocus[0] == pytest.approx(defocus, abs=2.0)  # grid step 10 Å, parabola
    assert fits.score[0] > 0.99 and fits.ambiguity[0] < 0.5
    assert fits.amplitude[0] > 0


def test_fit_rejects_negative_ring_amplitudes_and_flat_spectra():
    grid = _model(search_defoci(CONFIG))
    bins = radial_bins(P.patch, OPTICS.pixel_size, P.k_low, P.k_high)
    design = fit_design(grid, bins.counts, 0.3, 20.0)
    flat = np.full((1, bins.size), 0.3)
    inverted = 1.0 - _model([1600.0]).rings  # maxima where the physics puts zeros
    fits = fit_profiles(np.concatenate([flat, inverted]), design)
    assert fits.score[0] == 0 and math.isinf(fits.sigma[0])
    assert abs(fits.defocus[1] - 1600.0) > 20.0  # not fooled into the inverted solution


def test_windowed_patch_spectrum_matches_the_blurred_model():
    # An image whose spectrum is exactly E(k) sin^2(chi - alpha): the measured profile of
    # its patches must match the model column of that defocus, not a shifted one.
    rng = np.random.default_rng(0)
    n, defocus = 256, 1600.0
    ky = np.fft.fftfreq(n, d=OPTICS.pixel_size)
    k = np.sqrt(ky[:, None] ** 2 + ky[None, :] ** 2)
    from stream3d.popout.ctf_model import envelope, ring_phase
    amp = np.sqrt(envelope(k, OPTICS)) * np.abs(np.sin(ring_phase(k, defocus, OPTICS)))
    image = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * amp).real
    grid = patch_grid(image.shape, P.patch, 8)
    bins = radial_bins(P.patch, OPTICS.pixel_size, P.k_low, P.k_high)
    profile = radial_profiles(windowed_patches(image, grid, (0, grid.grid_shape[0])), bins).mean(0)
    model = _model(search_defoci(CONFIG))
    design = fit_design(model, bins.counts, 0.0, 1.0)
    fits = fit_profiles(profile[None], design)
    assert fits.defocus[0] == pytest.approx(defocus, abs=10.0)


def test_ring_count_is_small_near_scherzer_and_grows_with_underfocus():
    scherzer = 1.2 * math.sqrt(OPTICS.cs * 0.0196875)
    near, far = ring_count(np.array([scherzer, 2000.0]), OPTICS, P.k_low, P.k_high)
    assert near < 1.0 < 2.0 < far


def test_delocalisation_is_the_lens_shift_of_the_band_edge_and_larger_in_overfocus():
    # A frequency k images displaced by lambda |defocus k - Cs lambda^2 k^3| (Å): in overfocus
    # Cs adds to the defocus, so the shift is largest at the band's top; in underfocus it
    # subtracts. Without astigmatism.
    lam, cs = wavelength(OPTICS.energy), OPTICS.cs
    k = P.k_high
    over = lam * (2000.0 * k + cs * lam**2 * k**3)
    under = lam * (2000.0 * k - cs * lam**2 * k**3)
    flat = dataclasses.replace(OPTICS, absorption=0.0, astigmatism=0.0)
    assert delocalisation(-2000.0, flat, P.k_low, k) == pytest.approx(over, rel=1e-3)
    assert delocalisation(2000.0, flat, P.k_low, k) == pytest.approx(under, rel=1e-3)
    assert over - under == pytest.approx(2 * cs * lam**3 * k**3, rel=1e-2)  # ~2 Å
    # The farthest of several defoci; astigmatism adds its amplitude to the defocus.
    assert delocalisation([1000.0, -2000.0], flat, P.k_low, k) == pytest.approx(over, rel=1e-3)
    astig = dataclasses.replace(flat, astigmatism=300.0)
    assert delocalisation(-2000.0, astig, P.k_low, k) == pytest.approx(
        lam * (2300.0 * k + cs * lam**2 * k**3), rel=1e-3)


@pytest.mark.parametrize("absorption", [0.0, 0.1])
def test_thickness_of_a_linear_weak_object_image_is_recovered(absorption):
    """The Wiener inversion of the phase (and absorption) transfer gives the thickness back,
    with or without absorption: a pure phase object is measured from its phase contrast."""
    n, defocus, v0 = 256, 1700.0, CONFIG.sample.potential
    optics = dataclasses.replace(OPTICS, absorption=absorption)
    yy, xx = np.indices((n, n))
    truth = 60.0 * np.exp(-((yy - 128) ** 2 + (xx - 100) ** 2) / (2 * 25.0**2))  # Å
    k2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2
    phase = chi(k2, energy=OPTICS.energy, defocus=defocus, cs=OPTICS.cs)
    h = 2 * interaction_constant(OPTICS.energy) * v0 * (np.sin(phase) - absorption * np.cos(phase))
    contrast = np.fft.ifft2(np.fft.fft2(truth) * h).real
    # Noise-free: a high count level, so the Wiener filter barely regularises.
    filt = thickness_filter((n, n), defocus=defocus, optics=optics, potential=v0, resolution=2.5,
                            counts_per_unit=1e5)
    t = thickness_map(contrast, filt)
    t -= np.median(t[(yy - 128) ** 2 + (xx - 100) ** 2 > 100**2])  # the solvent is the zero
    assert t.max() == pytest.approx(truth.max(), rel=0.1)
    assert np.abs(t - truth).max() < 0.1 * truth.max()
    # At the wrong defocus the fringes are not undone: the same map is much worse.
    wrong = thickness_map(contrast, thickness_filter((n, n), defocus=defocus + 600.0, optics=optics,
                                                     potential=v0, resolution=2.5,
                                                     counts_per_unit=1e5))
    wrong -= np.median(wrong[(yy - 128) ** 2 + (xx - 100) ** 2 > 100**2])
    assert np.abs(wrong - truth).max() > 2 * np.abs(t - truth).max()


def test_thickness_inversion_and_ring_envelope_include_the_cameras_mtf():
    """A scintillator camera (half contrast at 0.25 Nyquist) multiplies the contrast by its
    MTF: told it, the Wiener inversion gives the thickness back; left out, the map is
    blurred and shrunk by it. The Thon-ring envelope carries MTF^2 (the shot noise, arising after
    the camera's blur in this model, stays white)."""
    from stream3d.physics.detector import MTF

    n, defocus, v0 = 256, 1700.0, CONFIG.sample.potential
    camera = MTF("scintillator", 0.25)
    told = dataclasses.replace(OPTICS, absorption=0.0, mtf=camera)
    yy, xx = np.indices((n, n))
    truth = 60.0 * np.exp(-((yy - 128) ** 2 + (xx - 100) ** 2) / (2 * 8.0**2))  # Å
    k2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2
    phase = chi(k2, energy=OPTICS.energy, defocus=defocus, cs=OPTICS.cs)
    h = 2 * interaction_constant(OPTICS.energy) * v0 * np.sin(phase) * camera.array((n, n))
    contrast = np.fft.ifft2(np.fft.fft2(truth) * h).real
    maps = {}
    for name, optics in (("told", told), ("untold", dataclasses.replace(told, mtf=MTF()))):
        t = thickness_map(contrast, thickness_filter((n, n), defocus=defocus, optics=optics,
                                                     potential=v0, resolution=2.5,
                                                     counts_per_unit=1e5))
        maps[name] = t - np.median(t[(yy - 128) ** 2 + (xx - 100) ** 2 > 100**2])
    error = {name: float(np.abs(t - truth).max()) for name, t in maps.items()}
    assert maps["told"].max() == pytest.approx(truth.max(), rel=0.1)
    assert error["told"] < 0.1 * truth.max(), error
    # Measured: 5.4 Å told, 7.7 Å untold (the rest is the map's 2.5 Å resolution).
    assert error["untold"] > error["told"] + 1.5, error
    k = np.array([0.0, 0.125, 0.25])  # Å^-1 at 1 Å/px: 0, 0.25 and 0.5 Nyquist
    from stream3d.popout.ctf_model import lens_envelope
    flat = dataclasses.replace(told, focal_spread=0.0)
    np.testing.assert_allclose(lens_envelope(k, flat), [1.0, 0.25, 1 / 25.0], rtol=1e-9)


def test_spread_keeps_a_constant_and_weights_pick_the_confident_patch():
    grid = patch_grid((200, 150), 64, 16)
    rows, cols = grid.grid_shape
    assert grid.starts_y[-1] == 200 - 64 and grid.starts_x[-1] == 150 - 64
    mean, total = spread(np.full((rows, cols), 321.0), np.ones((rows, cols)), grid)
    np.testing.assert_allclose(mean, 321.0, rtol=1e-6)
    assert (total > 0).all()
    values = np.zeros((rows, cols))
    values[:, -1] = 100.0
    weights = np.full((rows, cols), 1e-3)
    weights[:, -1] = 1.0
    mean, _ = spread(values, weights, grid)
    assert mean[:, -1].min() > 99.0  # the right edge follows its confident patch


def test_fill_nearest_and_patch_confidence():
    values = np.array([[1.0, 0.0, 0.0, 5.0]])
    known = np.array([[True, False, False, True]])
    np.testing.assert_array_equal(fill_nearest(values, known), [[1.0, 1.0, 5.0, 5.0]])

    class Fits:
        sigma = np.array([0.0, 40.0, 1e9, 10.0, 10.0])
        ambiguity = np.array([0.0, 0.0, 0.0, 1.0, 0.0])
    rings = np.array([3.0, 3.0, 3.0, 3.0, 0.5])
    conf = patch_confidence(Fits, rings, tolerance=40.0, min_rings=1.5)
    np.testing.assert_allclose(conf[:2], [1.0, 0.5])
    assert conf[2] < 1e-9 and conf[3] == 0 and conf[4] == 0


def test_volume_columns_have_the_requested_thickness_and_centre():
    height = np.array([[100.0, 330.0, 630.0, 5.0, 200.0]])
    thickness = np.array([[80.0, 47.0, 40.0, 30.0, 0.0]])
    vol = build_volume(height, thickness, slices=32, slice_thickness=20.0, potential=5.0)
    occ = vol / 5.0
    np.testing.assert_allclose(column_thickness(occ, 20.0), thickness, atol=1e-4)
    bottom, top = column_bounds(height, thickness, 640.0)
    assert bottom.min() >= 0 and top.max() <= 640.0
    # Columns sticking out of the cell are shifted in; the rest keep their centre.
    com = column_height(occ, 20.0)[0]
    assert com[0] == pytest.approx(100.0, abs=1.0) and com[1] == pytest.approx(330.0, abs=3.0)
    assert com[2] == pytest.approx(620.0, abs=1.0) and com[3] == pytest.approx(15.0, abs=2.0)
    assert not vol[:, 0, 4].any()


def test_elliptical_bins_follow_astigmatic_thon_rings():
    """With C12 = 150 Å the rings of a 128 px spectrum are ellipses: circular averaging washes
    them out, bins along the lens's ellipses keep them (and without astigmatism both agree)."""
    from stream3d.physics import astigmatic_chi

    n, defocus = 128, 2000.0
    lens = (OPTICS.energy, defocus, OPTICS.cs, 150.0, 30.0)
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.rfftfreq(n)[None, :]
    rings = np.sin(astigmatic_chi(ky, kx, energy=OPTICS.energy, defocus=defocus, cs=OPTICS.cs,
                                  astigmatism=150.0, astigmatism_angle=30.0)) ** 2

    def contrast(bins):  # ring contrast where the ellipses are far from circles
        profile = np.asarray(bins.average @ rings.ravel())[bins.k > 0.25]
        return float(profile.max() - profile.min())

    circular = contrast(radial_bins(n, 1.0, 0.1, 0.3))
    elliptical = contrast(radial_bins(n, 1.0, 0.1, 0.3, lens))
    assert elliptical > 0.8 and circular < 0.6 * elliptical, (circular, elliptical)
    plain = radial_bins(n, 1.0, 0.1, 0.3, (OPTICS.energy, defocus, OPTICS.cs, 0.0, 0.0))
    np.testing.assert_allclose(plain.k, radial_bins(n, 1.0, 0.1, 0.3).k, rtol=1e-6)


def _two_layer_object(n: int = 96):
    """One object (labels) made of two overlapping 40 px wide layers, with stacked columns
    x in [32, 64): twice the thickness, and a fitted height between the layers' 150 / 450 Å."""
    labels = np.zeros((n, n), dtype=int)
    labels[20:76, 8:88] = 1
    stacked = np.zeros((n, n), dtype=bool)
    stacked[20:76, 32:64] = True
    thickness = np.where(labels > 0, np.where(stacked, 120.0, 60.0), 0.0)
    height = np.where(stacked, 300.0, np.where(np.arange(n)[None, :] < 32, 150.0, 450.0))
    height = np.where(labels > 0, height, 0.0)
    return labels, stacked, thickness, height


def test_stacked_columns_include_thick_columns_fitted_between_the_layers():
    """The amplitude test saw both layers' rings in only the left half of the overlap; the
    right half's fits land between the layers (a mixture) on columns holding twice the
    material: the whole overlap is stacked, and no single-layer column is."""
    from stream3d.popout.layers import Layers, stacked_columns

    labels, stacked, thickness, height = _two_layer_object()
    seen = stacked & (np.arange(96)[None, :] < 48)
    full = lambda v: np.where(labels > 0, v, 0.0)  # noqa: E731
    candidates = Layers(seen, full(450.0), full(150.0), full(0.5))
    out = stacked_columns(candidates, labels, thickness, height)
    assert out is not None
    assert not (out.where & ~stacked).any()
    assert out.where[stacked].mean() > 0.98  # all but the corners the cleaning rounds off


def test_a_uniform_object_spanning_the_heights_is_not_stacked():
    """A tilted plate's heights also lie between its extremes, but its columns hold one
    layer's material: none is stacked."""
    from stream3d.popout.layers import Layers, stacked_columns

    labels, stacked, thickness, height = _two_layer_object()
    plate = np.where(labels > 0, 60.0, 0.0)
    ramp = np.where(labels > 0, np.linspace(150.0, 450.0, 96)[None, :] * np.ones((96, 1)), 0.0)
    seen = stacked & (np.arange(96)[None, :] < 48)
    candidates = Layers(seen, np.where(labels > 0, 450.0, 0.0), np.where(labels > 0, 150.0, 0.0),
                        np.full((96, 96), 0.5))
    assert stacked_columns(candidates, labels, plate, ramp) is None


def test_the_layer_pair_is_the_centre_of_each_layers_fits_not_a_percentile():
    """Fits of two layers (effective defocus 1500 and 1850 Å, 20 Å scatter) and of mixtures
    between them: the pair sits at each layer's centre, though the 10th / 90th percentiles that
    find the layers lie in the clusters' tails."""
    from types import SimpleNamespace

    from stream3d.popout.layers import extreme_pair

    rng = np.random.default_rng(0)
    fits = np.concatenate([1500 + 20 * rng.standard_normal(40), 1850 + 20 * rng.standard_normal(40),
                           rng.uniform(1600, 1750, 20)])
    weights = np.ones_like(fits)
    design = SimpleNamespace(defoci=np.arange(1000.0, 2500.0, 10.0))
    pair = extreme_pair(fits, weights, design, spread=40.0)
    assert abs(pair.top - 1500) <= 8 and abs(pair.bottom - 1850) <= 8, pair
    assert abs(np.percentile(fits, 10) - 1500) > 10 and abs(np.percentile(fits, 90) - 1850) > 20
    assert design.defoci[pair.index[0]] == pytest.approx(pair.top, abs=5)


def test_a_mask_reaching_past_its_object_takes_its_height_and_other_pieces_keep_theirs():
    from stream3d.popout.heights import reach_mask

    labels = np.zeros((40, 40), dtype=int)
    labels[5:15, 5:15] = 1
    mask = labels > 0
    mask[15:30, 9:11] = True  # a thin protrusion, far past the object
    mask[30:38, 25:35] = True  # a piece with no object (found by the texture alone)
    height = np.full((40, 40), 300.0)
    height[labels == 1] = 120.0
    out = reach_mask(height, labels, mask)
    assert (out[15:30, 9:11] == 120.0).all()
    assert (out[30:38, 25:35] == 300.0).all()
    assert (out[~mask] == 300.0).all()
