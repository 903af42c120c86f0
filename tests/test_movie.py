"""Simulated movies: counts at the dose, depth in the Thon rings, files that reopen with their
voxel sizes and OME scale, drift that moves the image, and one-line errors from the CLI."""

from __future__ import annotations

import io
import math

import mrcfile
import numpy as np
import pytest
import zarr
from scipy import ndimage
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.config import SPECIMEN_KINDS, Config
from stream3d.movie import check_simulation, frame_shifts, render_frame, shift_occupancy, simulate_movie
from stream3d.ome import scale_of
from stream3d.physics import wavelength
from stream3d.specimen import Dendrite, DendriteParams, Disc, amorphous_texture, column_height, discs
from stream3d.specimen.catalog import BUILDERS, build_specimen

# A small dendrite movie: 12 slices of 40 Å (480 Å of liquid), 96 x 96 Å, 3 frames.
SMALL = Config().replace("sample", slices=12, slice_thickness=40.0).replace(
    "simulate", frames=3, ny=96, nx=96, depth_low=60.0, depth_high=420.0, branches=5,
    growth=15.0, seed=11, frame_interval=0.25)


@pytest.fixture(scope="module")
def dendrite_movie(tmp_path_factory):
    out = tmp_path_factory.mktemp("movie")
    return simulate_movie(SMALL, out, progress=False), out


def test_vacuum_counts_average_to_the_dose_with_poisson_scatter(tmp_path):
    dose = 400.0
    cfg = (Config().replace("sample", slices=8, slice_thickness=40.0, pixel_size=1.25)
           .replace("detector", dose=dose, dtype="float32")
           .replace("simulate", specimen="discs", frames=3, ny=160, nx=160, depth_low=40.0,
                    depth_high=300.0, thickness=60.0))
    simulate_movie(cfg, tmp_path, progress=False)
    with mrcfile.open(tmp_path / "movie.mrc") as mrc:
        frames = np.asarray(mrc.data, dtype=np.float64)
    occupancy = zarr.open_group(tmp_path / "truth.zarr", mode="r")["occupancy"][0]
    # Vacuum: columns over 30 Å from any material (the lens delocalises edges by about
    # defocus x wavelength x aperture frequency = 2000 x 0.0197 x 0.51 = 20 Å).
    vacuum = ndimage.distance_transform_edt(occupancy.sum(axis=0) == 0) * 1.25 > 30.0
    counts = frames[:, vacuum]
    expected = dose * 1.25**2  # e/Å² x pixel area
    assert counts.size > 10000
    sigma = math.sqrt(expected / counts.size)  # Poisson error of the mean
    assert abs(counts.mean() - expected) < 4 * sigma
    assert counts.var() / expected == pytest.approx(1.0, abs=0.05)  # Poisson: variance = mean
    # Material absorbs and scatters out of the aperture: the whole frame averages below the dose.
    assert frames.mean() < expected - 10 * math.sqrt(expected / frames.size)


def _radial_power(image: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of a square image, one bin per 1/N Å⁻¹ (1 Å pixels)."""
    n = image.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fft2((image / image.mean() - 1) * window)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    bins = np.rint(k * n).astype(int).ravel()
    return np.bincount(bins, power.ravel()) / np.bincount(bins)


def _first_zero(energy: float, defocus: float, cs: float) -> float:
    """Spatial frequency (Å⁻¹) where |chi| first reaches pi: the first Thon-ring minimum."""
    lam = wavelength(energy)
    k = np.linspace(0.05, 0.4, 200_001)
    chi = np.pi * lam * defocus * k**2 - 0.5 * np.pi * cs * lam**3 * k**4
    return float(k[np.argmax(chi >= np.pi)])


def test_a_disc_at_two_heights_gives_different_thon_rings_where_theory_says():
    n = 256
    cfg = Config().replace("sample", slices=16, slice_thickness=40.0)
    shape, sampling = (16, n, n), cfg.sample.sampling
    texture = amorphous_texture(shape, sampling, length=2.0, rng=np.random.default_rng(5))
    power = {}
    for height, noise in ((100.0, 1), (100.0, 2), (500.0, 1)):
        occupancy = discs(shape, sampling, [Disc(n / 2, n / 2, 0.6 * n, height, 80.0)])
        counts, _, _ = render_frame(occupancy, cfg, texture=texture, noise_seed=noise)
        power[height, noise] = _radial_power(counts)
    band = slice(int(0.08 * n), int(0.3 * n))

    def distance(a, b):  # rms difference of log spectra over the Thon-ring band
        return float(np.sqrt(np.mean((np.log(a[band]) - np.log(b[band])) ** 2)))

    noise_only = distance(power[100.0, 1], power[100.0, 2])  # same specimen, other noise
    assert distance(power[100.0, 1], power[500.0, 1]) > 10 * noise_only
    # The first minimum sits where the effective defocus (defocus - height) puts it.
    m = cfg.microscope
    search = np.arange(int(0.12 * n), int(0.22 * n))
    for height in (100.0, 500.0):
        found = search[np.argmin(power[height, 1][search])] / n
        assert found == pytest.approx(_first_zero(m.energy, m.defocus - height, m.cs), abs=2 / n)


def test_movie_and_truth_reopen_with_voxel_sizes_and_ome_scale(dendrite_movie):
    result, out = dendrite_movie
    assert result.frames == 3 and result.clipped == 0
    assert mrcfile.validate(str(result.movie), print_file=io.StringIO())
    with mrcfile.open(result.movie) as mrc:
        data = np.asarray(mrc.data)
        assert data.shape == (3, 96, 96) and data.dtype == np.uint16
        assert float(mrc.voxel_size.x) == pytest.approx(1.0)
        assert float(mrc.voxel_size.y) == pytest.approx(1.0)
        assert mrc.is_image_stack()
        assert float(mrc.header.dmean) == pytest.approx(data.mean(), rel=1e-5)
        assert float(mrc.header.dmax) == data.max()
    truth = zarr.open_group(result.truth, mode="r")
    occupancy, potential = truth["occupancy"], truth["potential"]
    assert occupancy.shape == potential.shape == (3, 12, 96, 96)
    assert occupancy.chunks == (1, 12, 96, 96) and occupancy.dtype == np.float32
    np.testing.assert_array_equal(truth["frame_id"][:], [0, 1, 2])
    np.testing.assert_allclose(truth["timestamp"][:], [0.0, 0.25, 0.5])
    assert scale_of(truth.attrs["ome"]) == (0.25, 40.0, 1.0, 1.0)
    meta = truth.attrs["stream3d"]
    assert meta["kind"] == "truth" and meta["config"] == SMALL.to_dict()
    assert config_mod.load(result.config) == SMALL
    assert result.preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The truth is the specimen itself: the same dendrite, frame by frame.
    sim = SMALL.simulate
    dendrite = Dendrite(DendriteParams(branches=5, growth=15.0, depth=(60.0, 420.0),
                                       radius=(sim.radius_min, sim.radius_max),
                                       initial_length=sim.initial_length, seed=11),
                        (12, 96, 96), (40.0, 1.0, 1.0))
    for t in range(3):
        np.testing.assert_array_equal(occupancy[t], dendrite.occupancy(t))
    # Potential = material potential x occupancy, textured: zero in the liquid, ~5 V inside.
    occ, pot = occupancy[2], potential[2]
    assert np.all(pot[occ == 0] == 0)
    assert pot[occ == 1].mean() == pytest.approx(SMALL.sample.potential, rel=0.05)
    assert pot[occ == 1].std() == pytest.approx(0.3 * SMALL.sample.potential, rel=0.15)


def test_growing_dendrite_darkens_more_of_the_frame(dendrite_movie):
    result, _ = dendrite_movie
    truth = zarr.open_group(result.truth, mode="r")
    covered = [(truth["occupancy"][t].sum(axis=0) > 0).sum() for t in range(3)]
    assert covered[0] < covered[1] < covered[2]


def test_drift_moves_the_image_and_the_truth_together(tmp_path):
    cfg = (Config().replace("sample", slices=8, slice_thickness=40.0)
           .replace("simulate", specimen="two_layers", frames=3, ny=64, nx=64, depth_low=40.0,
                    depth_high=300.0, thickness=60.0, drift=3.0, drift_angle=90.0))
    simulate_movie(cfg, tmp_path, progress=False)
    with mrcfile.open(tmp_path / "movie.mrc") as mrc:
        frames = np.asarray(mrc.data, dtype=np.float64)
    a, b = (f - f.mean() for f in (frames[0], frames[2]))
    xcorr = np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a))).real
    peak = np.unravel_index(np.argmax(xcorr), xcorr.shape)
    assert peak == (6, 0)  # 3 Å/frame along +y, 1 Å pixels, two frames apart
    truth = zarr.open_group(tmp_path / "truth.zarr", mode="r")
    np.testing.assert_allclose(truth["shift"][:], [[0, 0], [3, 0], [6, 0]], atol=1e-12)
    np.testing.assert_array_equal(truth["occupancy"][2],
                                  np.roll(truth["occupancy"][0], 6, axis=1))


def test_frame_shifts_combine_drift_and_jitter():
    sim = Config().replace("simulate", frames=400, drift=2.0, drift_angle=30.0,
                           jitter=0.5).simulate
    shifts = frame_shifts(sim)
    t = np.arange(400)
    steady = 2.0 * t[:, None] * np.array([math.sin(math.pi / 6), math.cos(math.pi / 6)])
    residual = shifts - steady
    assert residual.std() == pytest.approx(0.5, rel=0.1) and abs(residual.mean()) < 0.1
    np.testing.assert_array_equal(frame_shifts(sim), shifts)  # seeded


def test_subpixel_shift_keeps_occupancy_a_fraction_and_its_total():
    occ = discs((4, 32, 32), (20.0, 1.0, 1.0), [Disc(16, 16, 7, 40, 30)])
    moved = shift_occupancy(occ, (0.4, -1.7))
    assert moved.min() >= 0 and moved.max() <= 1
    assert moved.sum() == pytest.approx(occ.sum(), rel=1e-5)


def test_uint16_movies_clip_and_count_what_they_clip(tmp_path):
    cfg = (Config().replace("detector", dose=70000.0)
           .replace("sample", slices=4, slice_thickness=40.0)
           .replace("simulate", specimen="discs", frames=1, ny=32, nx=32, depth_low=20.0,
                    depth_high=150.0, thickness=40.0))
    result = simulate_movie(cfg, tmp_path, progress=False)
    with mrcfile.open(result.movie) as mrc:
        assert mrc.data.dtype == np.uint16 and int(mrc.data.max()) == 65535
        assert result.clipped == int((np.asarray(mrc.data) == 65535).sum()) > 0


def test_every_specimen_kind_builds_inside_its_depth_range():
    assert set(BUILDERS) == set(SPECIMEN_KINDS)
    cfg = SMALL.replace("simulate", thickness=60.0)
    low, high = cfg.simulate.depth_low, cfg.simulate.depth_high
    for kind in SPECIMEN_KINDS:
        occ = build_specimen(cfg.replace("simulate", specimen=kind)).occupancy(0)
        assert occ.shape == (12, 96, 96) and occ.max() > 0.99
        heights = column_height(occ, 40.0)
        heights = heights[np.isfinite(heights)]
        assert low < heights.min() and heights.max() < high, kind


def test_example_config_is_valid():
    from pathlib import Path

    cfg = config_mod.load(Path(__file__).resolve().parents[1] / "configs" / "simulate-dendrite.toml")
    check_simulation(cfg)
    assert cfg.simulate.specimen == "dendrite"


runner = CliRunner()


def test_cli_simulate_writes_the_movie(tmp_path):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--set", "simulate.frames=2",
                                 "--set", "simulate.ny=80", "--set", "simulate.nx=80",
                                 "--set", "sample.slices=8", "--set", "sample.slice_thickness=40",
                                 "--set", "simulate.depth_high=300"])
    assert result.exit_code == 0, result.output
    for name in ("movie.mrc", "truth.zarr", "config.toml", "preview.png"):
        assert f"wrote {tmp_path / name}" in result.output
    with mrcfile.open(tmp_path / "movie.mrc") as mrc:
        assert mrc.data.shape == (2, 80, 80)


@pytest.mark.parametrize("args, message", [
    (["--set", "detector.dose=-5"], "detector.dose must be > 0"),
    (["--set", "simulate.ny=4"], "simulate.ny must be >= 8"),
    (["--set", "simulate.ny=40"], "too small for branches"),
    (["--set", "simulate.depth_high=900"], "simulate.depth_high 900 Å lies above the top"),
    (["--set", "simulate.specimen=cube"], "simulate.specimen must be one of"),
    (["--set", "simulate.ny=300000", "--set", "simulate.nx=300000"], "GiB of memory per frame"),
    (["--set", "simulate.depth_low=600", "--set", "simulate.specimen=discs"],
     "simulate.depth_high must be > simulate.depth_low"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["simulate", "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "cannot write to the output folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_help_teaches():
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for word in ("--out", "--set", "truth.zarr", "movie.mrc", "dendrite", "depth_low"):
        assert word in result.output
