"""stream3d calibrate: the lens measured from simulated frames whose lens is known."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stream3d import config
from stream3d.calibrate import (
    FitOptions, effective_k2, elliptical_average, estimate_dose, fit_spectrum, power_spectrum,
)
from stream3d.cli import app
from stream3d.physics import astigmatic_chi, chi
from stream3d.simulate import simulate_frame

from calibrate_frames import effective_defocus, film_config, film_frame

E300 = 300e3


def _options(cfg: config.Config, **kw) -> FitOptions:
    m = cfg.microscope
    return FitOptions(energy=m.energy, cs=m.cs, absorption=cfg.sample.absorption,
                      aperture=m.aperture, defocus_max=9500.0, **kw)


def _angle_error(a: float, b: float) -> float:
    return abs(((a - b + 90.0) % 180.0) - 90.0)


@pytest.mark.parametrize("angle, seed", [(0.0, 1), (50.0, 2), (110.0, 3), (160.0, 4)])
def test_film_512_defocus_astigmatism_and_angle(angle, seed):
    # The Must-show: 512 x 512 film, 2000 e/Å², defocus 2500 Å, C12 = 60 Å.
    cfg = film_config(defocus=2500.0, astigmatism=60.0, angle=angle)
    frame = film_frame(cfg, seed=seed)
    started = time.perf_counter()
    fit = fit_spectrum(power_spectrum([frame], pixel_size=1.0), _options(cfg))
    seconds = time.perf_counter() - started
    assert abs(fit.defocus - effective_defocus(cfg)) < 30.0
    assert abs(fit.astigmatism - 60.0) < 15.0
    assert _angle_error(fit.astigmatism_angle, angle) < 10.0
    assert 0 < fit.defocus_error < 15 and 0 < fit.astigmatism_error < 15
    assert fit.resolution < 4.0  # the rings fit out to the band limit, 3 Å
    assert fit.significance > 200 and not fit.warnings
    assert seconds < 6.0  # 0.3-0.5 s alone on one core; slack for a shared machine


def test_no_astigmatism_is_measured_as_none_and_other_defoci():
    for defocus, c12 in ((2500.0, 0.0), (1200.0, 40.0), (6000.0, 100.0)):
        cfg = film_config(defocus=defocus, astigmatism=c12, angle=70.0)
        fit = fit_spectrum(power_spectrum([film_frame(cfg, seed=7)], pixel_size=1.0),
                           _options(cfg))
        assert abs(fit.defocus - effective_defocus(cfg)) < 30.0, defocus
        assert abs(fit.astigmatism - c12) < 15.0, defocus
        if c12 > 0:
            assert _angle_error(fit.astigmatism_angle, 70.0) < 10.0


def test_cs_is_fitted_when_asked_from_a_wrong_start():
    cfg = film_config(defocus=2500.0, astigmatism=60.0, angle=30.0)
    spectrum = power_spectrum([film_frame(cfg, seed=5)], pixel_size=1.0)
    fixed = fit_spectrum(spectrum, _options(cfg))
    assert fixed.cs == 1e7 and fixed.cs_error is None
    fit = fit_spectrum(spectrum, dataclasses.replace(_options(cfg), cs=0.8e7, fit_cs=True))
    assert abs(fit.cs - 1e7) < max(3 * fit.cs_error, 0.05e7) and fit.cs_error < 0.2e7
    assert abs(fit.defocus - effective_defocus(cfg)) < 30
    assert abs(fit.astigmatism - 60) < 15


def test_region_picks_the_scatterer_at_its_own_height():
    # Left half: film at the exit plane; right half: film 400 Å above it. Each region gives its
    # own effective defocus; the fit of the whole frame reports neither exactly.
    cfg = film_config(defocus=2500.0, astigmatism=60.0, angle=30.0)
    cfg = cfg.replace("sample", slices=20).replace("simulate", ny=256, nx=512)
    occupancy = np.zeros((20, 256, 512), np.float32)
    occupancy[-1, :, :256] = 1
    occupancy[0, :, 256:] = 1
    counts, _ = simulate_frame(occupancy, cfg, seed=4)
    options = _options(cfg)
    left = fit_spectrum(power_spectrum([counts[:, :240]], pixel_size=1.0), options)
    right = fit_spectrum(power_spectrum([counts[:, 272:]], pixel_size=1.0), options)
    assert abs(left.defocus - (2500 - 20)) < 30
    assert abs(right.defocus - (2500 - 400)) < 30
    for fit in (left, right):
        assert abs(fit.astigmatism - 60) < 15 and _angle_error(fit.astigmatism_angle, 30) < 10


def test_pure_noise_is_refused_with_one_line():
    rng = np.random.default_rng(0)
    noise = rng.poisson(2000, (512, 512)).astype(np.float32)
    cfg = film_config()
    with pytest.raises(ValueError, match="no Thon rings found"):
        fit_spectrum(power_spectrum([noise], pixel_size=1.0), _options(cfg))


def test_effective_k2_maps_astigmatic_rings_onto_circles():
    shape, sampling, d, c12, phi12 = (96, 128), (0.8, 0.6), 2000.0, 150.0, 25.0
    ky = np.fft.fftfreq(shape[0], d=sampling[0])[:, None]
    kx = np.fft.fftfreq(shape[1], d=sampling[1])[None, :]
    # Cs = 0: exactly k^2 (D - C12 cos 2(phi - phi12)) / D.
    u = effective_k2(shape, sampling, energy=E300, defocus=d, astigmatism=c12,
                     astigmatism_angle=phi12)
    phi = np.arctan2(ky, kx)
    expected = (ky**2 + kx**2) * (d - c12 * np.cos(2 * (phi - np.radians(phi12)))) / d
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-15)
    # With Cs: the isotropic chi at u equals the astigmatic chi below the vertex of chi.
    cs = 1e7
    u = effective_k2(shape, sampling, energy=E300, defocus=d, cs=cs, astigmatism=c12,
                     astigmatism_angle=phi12)
    target = astigmatic_chi(ky, kx, energy=E300, defocus=d, cs=cs, astigmatism=c12,
                            astigmatism_angle=phi12)
    lam = 0.0196875  # Å at 300 kV
    vertex = -((math.pi * lam * d) ** 2) / (2 * math.pi * cs * lam**3)  # least chi of isotropic
    # Before the vertex along every direction, and above the isotropic chi's least value:
    below = (target > vertex + 1e-6) & (ky**2 + kx**2 < (d - c12) / (cs * lam**2))
    assert 0.5 < below.mean() < 1  # both sides of the vertex are on this grid
    np.testing.assert_allclose(chi(u, energy=E300, defocus=d, cs=cs)[below], target[below],
                               atol=1e-9)
    # Past the vertex no isotropic |k| matches: the vertex d / (Cs lam^2) is returned.
    np.testing.assert_allclose(u[target < vertex], d / (cs * lam**2), rtol=1e-4)
    # rfft half plane: the first columns of the full grid (but Nyquist, +kx there, -kx in fftfreq).
    half = effective_k2(shape, sampling, energy=E300, defocus=d, cs=cs, astigmatism=c12,
                        astigmatism_angle=phi12, rfft=True)
    assert half.shape == (shape[0], shape[1] // 2 + 1)
    np.testing.assert_array_equal(half[:, :-1], u[:, : shape[1] // 2])
    with pytest.raises(ValueError, match="astigmatism must be in"):
        effective_k2(shape, sampling, energy=E300, defocus=d, astigmatism=d)
    with pytest.raises(ValueError, match="underfocus"):
        effective_k2(shape, sampling, energy=E300, defocus=-5.0)


def test_elliptical_average_keeps_the_ring_contrast_a_radial_average_loses():
    n, d, c12, phi12 = 256, 3000.0, 200.0, 60.0
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    power = np.sin(astigmatic_chi(ky, kx, energy=E300, defocus=d, cs=0.0, astigmatism=c12,
                                  astigmatism_angle=phi12)) ** 2
    edges = np.linspace(0.25, 0.33, 33)  # Å^-1: ~3 rings, where 200 Å of C12 moves them most
    centres = 0.5 * (edges[1:] + edges[:-1])
    ideal = np.sin(chi(centres**2, energy=E300, defocus=d, cs=0.0)) ** 2
    u = effective_k2((n, n), (1.0, 1.0), energy=E300, defocus=d, astigmatism=c12,
                     astigmatism_angle=phi12)
    elliptical, counts = elliptical_average(power, u, edges)
    radial, _ = elliptical_average(power, (ky**2 + kx**2) * np.ones_like(power), edges)
    assert counts.min() > 0
    assert np.corrcoef(elliptical, ideal)[0, 1] > 0.97
    assert np.ptp(elliptical) > 0.95 and np.ptp(radial) < 0.5


def test_dose_from_counts_and_from_the_shot_noise():
    rng = np.random.default_rng(3)
    pixel = 0.5
    frames = [rng.poisson(500.0, (256, 256)).astype(np.float32) for _ in range(2)]
    spectrum = power_spectrum(frames, pixel_size=pixel)
    dose = estimate_dose(frames, spectrum, pixel_size=pixel, k_signal=0.6)
    assert dose.frame_mean_dose == pytest.approx(2000.0, rel=2e-3)
    assert dose.dose == pytest.approx(2000.0, rel=1e-2)
    assert dose.dose_from_noise == pytest.approx(2000.0, rel=3e-2)
    # A detector gain of 3 counts per electron triples the counts, not the shot-noise dose.
    gained = [3 * f for f in frames]
    dose3 = estimate_dose(gained, power_spectrum(gained, pixel_size=pixel), pixel_size=pixel,
                          k_signal=0.6)
    assert dose3.dose == pytest.approx(3 * dose.dose, rel=1e-6)
    assert dose3.dose_from_noise == pytest.approx(dose.dose_from_noise, rel=1e-6)
    assert dose3.counts_per_electron == pytest.approx(3.0, rel=3e-2)


def test_power_spectrum_rejects_bad_frames():
    with pytest.raises(ValueError, match="non-finite"):
        power_spectrum([np.full((128, 128), np.nan)], pixel_size=1.0)
    with pytest.raises(ValueError, match="mean counts"):
        power_spectrum([np.zeros((128, 128))], pixel_size=1.0)
    with pytest.raises(ValueError, match="too small"):
        power_spectrum([np.ones((40, 40))], pixel_size=1.0)
    with pytest.raises(ValueError, match="no frames"):
        power_spectrum([], pixel_size=1.0)


# ---- the command line ---------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    """Four 256 x 256 film frames whose defocus drifts by 40 Å per frame (saved as .npy)."""
    frames = []
    for t in range(4):
        cfg = film_config(defocus=2400.0 + 40.0 * t, astigmatism=60.0, angle=40.0, size=256)
        frames.append(film_frame(cfg, seed=10 + t))
    path = tmp_path_factory.mktemp("cal") / "movie.npy"
    np.save(path, np.stack(frames))
    return path


def test_cli_json_write_pictures_and_per_frame_csv(movie, tmp_path):
    out, written = tmp_path / "out", tmp_path / "lens.toml"
    result = runner.invoke(app, ["calibrate", str(movie), "--json", "--out", str(out),
                                 "--write", str(written), "--per-frame", "--frames", "0:4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("defocus", "astigmatism", "astigmatism_angle", "defocus_error", "resolution",
                "dose", "scatterer"):
        assert key in data
    # The average spectrum sees the mean effective defocus, 2460 - 20 Å.
    assert abs(data["defocus"] - 2440.0) < 30 and abs(data["astigmatism"] - 60) < 15
    assert abs(data["dose"] - 2000) < 60 and data["frames"] == [0, 4]
    for name in ("spectrum.png", "profile.png", "calibration.json", "per_frame.csv"):
        assert (out / name).stat().st_size > 1000 or name.endswith(("json", "csv"))
    rows = list(csv.DictReader(open(out / "per_frame.csv")))
    assert [int(r["frame"]) for r in rows] == [0, 1, 2, 3]
    for t, row in enumerate(rows):
        assert abs(float(row["defocus"]) - (2380.0 + 40.0 * t)) < 30
    cfg = config.load(written)
    # The lens defocus written: effective + the scatterer's height, by default the middle of
    # the default 32 x 20 Å cell (test_calibrate_write.py reconstructs with such a config).
    assert data["height"] == 320.0 and data["lens_defocus"] == data["defocus"] + 320.0
    assert cfg.microscope.defocus == pytest.approx(data["lens_defocus"], abs=0.1)
    assert cfg.microscope.astigmatism == pytest.approx(data["astigmatism"], abs=0.1)
    text = written.read_text()
    assert "Written by stream3d calibrate from movie.npy frames 0:4" in text
    assert "defocus = " in text and "# measured by stream3d calibrate" in text


def test_per_frame_keeps_going_past_a_frame_without_rings(movie, tmp_path):
    frames = np.load(movie)
    rng = np.random.default_rng(2)
    frames[1] = rng.poisson(2000, frames[1].shape)  # a blank frame: shot noise only
    path = tmp_path / "gap.npy"
    np.save(path, frames)
    result = runner.invoke(app, ["calibrate", str(path), "--per-frame", "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "o" / "per_frame.csv")))
    assert len(rows) == 4
    assert rows[1]["defocus"] == "nan" and "no Thon rings found" in rows[1]["error"]
    for t in (0, 2, 3):
        assert abs(float(rows[t]["defocus"]) - (2380.0 + 40.0 * t)) < 30 and not rows[t]["error"]
    assert "1 not fitted" in result.output


def test_cli_one_frame_region_and_human_output(movie):
    result = runner.invoke(app, ["calibrate", str(movie), "--frames", "2",
                                 "--region", "0,0,200,256"])
    assert result.exit_code == 0, result.output
    assert "defocus" in result.output and "dominant scatterer" in result.output
    value = float(result.output.split()[1])
    assert abs(value - 2460.0) < 30


@pytest.mark.parametrize("args, message", [
    (["--frames", "9:12"], "selects no frame"),
    (["--frames", "a:b"], "must be A:B or N"),
    (["--region", "0,0,300,10"], "is not inside"),
    (["--region", "1,2,3"], "four pixel indices"),
    (["--resolution", "30,3,1"], "two numbers"),
    (["--tile", "16"], "tile 16 px"),
])
def test_cli_bad_options_are_one_line_exit_2(movie, args, message):
    result = runner.invoke(app, ["calibrate", str(movie), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_bad_files_are_one_line_exit_2(tmp_path):
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "none.mrc")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    flat = tmp_path / "flat.npy"
    np.save(flat, np.full((256, 256), 1000.0, np.float32))
    result = runner.invoke(app, ["calibrate", str(flat)])
    assert result.exit_code == 2 and "power spectrum has empty frequencies" in result.output
    noise = tmp_path / "noise.npy"
    np.save(noise, np.random.default_rng(1).poisson(2000, (256, 256)).astype(np.float32))
    result = runner.invoke(app, ["calibrate", str(noise)])
    assert result.exit_code == 2 and "no Thon rings found" in result.output
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy")
    result = runner.invoke(app, ["calibrate", str(garbage)])
    assert result.exit_code == 2 and "not a readable .npy" in result.output


def test_cli_reads_an_mrc_movie_with_its_pixel_size(movie, tmp_path):
    from stream3d.io.movies import write_mrc_movie

    path = write_mrc_movie(tmp_path / "m.mrc", np.load(movie)[:2].astype(np.float32),
                           pixel_size=1.0)
    result = runner.invoke(app, ["calibrate", str(path), "--json", "--set",
                                 "sample.pixel_size=2.0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pixel_size"] == 1.0  # the file's, not the config's
    assert abs(data["defocus"] - 2400.0) < 30 and data["tiles"] == 18


def test_focus_tracker_follows_and_keeps_the_last_lens_through_a_blank_frame(movie):
    from stream3d.calibrate import FocusTracker

    frames = np.load(movie)
    cfg = film_config(defocus=2400.0)
    tracker = FocusTracker(_options(cfg), pixel_size=1.0)
    blank = np.random.default_rng(5).poisson(2000, frames[0].shape).astype(np.float32)
    first_blank = tracker.update(blank)  # nothing known yet: NaN, config left alone
    assert math.isnan(first_blank.defocus) and first_blank.fit is None
    assert "no Thon rings found" in first_blank.error
    assert FocusTracker.config_for(cfg, first_blank) == cfg
    lens0 = tracker.update(frames[0])
    assert abs(lens0.defocus - 2380.0) < 30 and lens0.fit is not None
    kept = tracker.update(blank)
    assert kept.fit is None and kept.defocus == lens0.defocus
    lens3 = tracker.update(frames[3])
    assert abs(lens3.defocus - 2500.0) < 30
    moved = FocusTracker.config_for(cfg, lens3)
    assert moved.microscope.defocus == lens3.defocus
    assert moved.microscope.astigmatism == lens3.astigmatism
    assert moved.microscope.astigmatism_angle == lens3.astigmatism_angle


def test_bare_tiles_are_the_least_contrasted_share_and_only_they_are_averaged():
    """frame_power(bare=...) keeps that share of the tiles with least contrast variance: on a
    flat frame with one strongly textured corner, the kept tiles' spectrum is the flat part's
    alone (the whole frame's holds the corner's power)."""
    from stream3d.calibrate.spectrum import frame_power

    rng = np.random.default_rng(3)
    frame = 1000.0 + rng.normal(0.0, 1.0, (256, 256))
    frame[:96, :96] += rng.normal(0.0, 100.0, (96, 96))  # the "object"
    whole, n_all, _ = frame_power(frame, 64)
    bare, n_bare, _ = frame_power(frame, 64, bare=0.25)
    assert (n_all, n_bare) == (49, 12)
    # white noise of variance (1 / 1000)^2 per pixel in contrast units: its periodogram level
    np.testing.assert_allclose((bare / n_bare).mean(), 1e-6, rtol=0.1)
    assert (whole / n_all).mean() > 100 * 1e-6
