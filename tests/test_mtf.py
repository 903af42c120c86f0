"""The detector's MTF: analytic curves, the simulator's and the forward model's images, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stream3d import config as config_mod
from stream3d.config import ConfigError
from stream3d.mtf import mtf_from_config, read_mtf_file, write_mtf_file
from stream3d.physics import MTF, apply_mtf
from stream3d.refine.model import ImagingModel
from stream3d.simulate import simulate_intensity

N = 64


def _cosines(periods=((0, 8), (4, 0), (0, 24), (12, 12))):
    """1 + small cosines at integer frequencies (cycles per frame along y, x)."""
    y, x = np.mgrid[:N, :N]
    image = np.ones((N, N))
    for cy, cx in periods:
        image += 0.01 * np.cos(2 * np.pi * (cy * y + cx * x) / N)
    return image, periods


def _coefficient(image, cy, cx):
    return np.fft.fft2(image)[cy % N, cx % N]


@pytest.mark.parametrize("kind", ["scintillator", "counting"])
def test_apply_mtf_multiplies_each_fourier_coefficient_by_the_analytic_curve(kind):
    image, periods = _cosines()
    out = apply_mtf(torch.as_tensor(image), MTF(kind, half=0.25)).numpy()
    assert out.mean() == pytest.approx(1.0, abs=1e-12)  # the dose is kept
    for cy, cx in periods:
        fy, fx = 2 * cy / N, 2 * cx / N  # units of Nyquist
        if kind == "scintillator":
            expected = 1 / (1 + (math.hypot(fy, fx) / 0.25) ** 2)
        else:
            expected = np.sinc(fy / 2) * np.sinc(fx / 2)
        ratio = _coefficient(out, cy, cx) / _coefficient(image, cy, cx)
        assert ratio.real == pytest.approx(expected, rel=1e-9) and abs(ratio.imag) < 1e-9


def test_the_scintillator_curve_is_half_at_mtf_half_and_counting_is_2_over_pi_at_nyquist():
    assert MTF("scintillator", half=0.3).radial(0.3) == pytest.approx(0.5)
    assert MTF("counting").radial(1.0) == pytest.approx(2 / math.pi)
    assert MTF("none").grid((8, 8)).eq(1).all()


def test_the_simulators_image_of_a_periodic_object_carries_the_mtf():
    """A weak periodic potential imaged by the simulator with and without the camera: each
    Fourier coefficient of the image is multiplied by the analytic MTF at its frequency."""
    sets = ["sample.slices=2", "sample.slice_thickness=10", "sample.texture=0"]
    perfect = config_mod.load(None, sets)
    camera = config_mod.load(None, [*sets, "detector.mtf=scintillator",
                                    "detector.mtf_half=0.3"])
    pattern, periods = _cosines(((0, 6), (5, 0), (8, 8), (0, 16)))
    potential = np.repeat(((pattern - 1) * 50)[None], 2, axis=0).astype(np.float32)
    plain = simulate_intensity(potential, perfect).astype(np.float64)
    seen = simulate_intensity(potential, camera).astype(np.float64)
    for cy, cx in periods:
        f = math.hypot(2 * cy / N, 2 * cx / N)
        ratio = _coefficient(seen, cy, cx) / _coefficient(plain, cy, cx)
        assert abs(_coefficient(plain, cy, cx)) > 1.0  # the pattern is imaged
        assert abs(ratio - 1 / (1 + (f / 0.3) ** 2)) < 1e-4
    # Switched off, nothing changes: the test above fails without the MTF.
    assert not np.allclose(plain, seen, atol=1e-4)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_the_refinement_model_applies_the_mtf_on_its_device(device):
    cfg = config_mod.load(None, ["sample.slices=4", "detector.mtf=scintillator"])
    model = ImagingModel.from_config(cfg)
    assert model.mtf == MTF("scintillator", 0.25)
    volume = torch.zeros((4, N, N), device=device)
    volume[:, 20:40, 20:40] = 5.0
    volume.requires_grad_(True)
    seen = model.intensity(volume)
    assert seen.device.type == device
    plain = ImagingModel.from_config(config_mod.load(None, ["sample.slices=4"])).intensity(
        volume.detach())
    expected = apply_mtf(plain, MTF("scintillator", 0.25))
    assert torch.allclose(seen.detach(), expected, atol=1e-5)
    seen.sum().backward()  # differentiable
    assert volume.grad is not None and torch.isfinite(volume.grad).all()


def test_a_measured_curve_from_a_file(tmp_path):
    path = write_mtf_file(tmp_path / "camera.txt", np.array([0.0, 0.5, 1.0]),
                          np.array([1.0, 0.6, 0.2]), comment="vendor sheet")
    cfg = config_mod.load(None, ["detector.mtf=file", f"detector.mtf_file={path}"])
    mtf = mtf_from_config(cfg)
    assert mtf.kind == "table" and mtf.radial(0.25) == pytest.approx(0.8)
    assert mtf.radial(1.2) == pytest.approx(0.2)  # held beyond the last point


@pytest.mark.parametrize("text, message", [
    ("0 1\n", "at least two rows"),
    ("0 1\n0.5\n", "line 2: expected two numbers"),
    ("0 1\n0.5 x\n", "line 2: expected two numbers"),
    ("0.5 1\n0.2 0.5\n", "increasing"),
    ("0 1\n1 7\n", "between 0 and 1.5"),
])
def test_bad_mtf_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / f"bad{abs(hash(text))}.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_mtf_file(str(path))
    with pytest.raises(ConfigError, match="detector.mtf_file .* does not exist"):
        read_mtf_file(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="detector.mtf_file must name"):
        config_mod.load(None, ["detector.mtf=file"])
    with pytest.raises(ConfigError, match="detector.mtf must be one of"):
        config_mod.load(None, ["detector.mtf=ccd"])


def _scintillator_flat_fields(n=4, size=256, counts=500.0, half=0.3, seed=0):
    """Flat fields of a camera whose scintillator blurs each electron's event: Poisson counts,
    then the MTF (noise and signal alike)."""
    rng = np.random.default_rng(seed)
    mtf = MTF("scintillator", half)
    return [apply_mtf(torch.as_tensor(rng.poisson(counts, (size, size)).astype(np.float64)),
                      mtf).numpy() for _ in range(n)]


def test_the_noise_power_spectrum_gives_the_scintillator_mtf():
    from stream3d.calibrate.noise_mtf import measure_noise_mtf

    measured = measure_noise_mtf(_scintillator_flat_fields())
    truth = MTF("scintillator", 0.3).radial(measured.frequency)
    inside = measured.frequency < 0.9
    assert np.abs(measured.mtf - truth)[inside].max() < 0.05
    assert measured.half == pytest.approx(0.3, abs=0.02)
    # Unblurred (white) Poisson noise: the MTF stays 1, the gain is 1 count per electron.
    white = measure_noise_mtf([np.random.default_rng(s).poisson(500.0, (256, 256))
                               for s in range(4)])
    assert np.abs(white.mtf - 1).max() < 0.1 and white.gain == pytest.approx(1.0, abs=0.05)
    assert math.isnan(white.half)


def test_calibrate_mtf_reports_and_writes_a_curve_the_config_reads(tmp_path):
    import json

    from typer.testing import CliRunner

    from stream3d.cli import app

    path = tmp_path / "flat.npy"
    np.save(path, np.stack(_scintillator_flat_fields()).astype(np.float32))
    result = CliRunner().invoke(app, ["calibrate", str(path), "--mtf", "--json", "--out",
                                      str(tmp_path / "cal")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mtf_half"] == pytest.approx(0.3, abs=0.02)
    written = tmp_path / "cal" / "mtf.txt"
    cfg = config_mod.load(None, ["detector.mtf=file", f"detector.mtf_file={written}"])
    assert mtf_from_config(cfg).radial(0.3) == pytest.approx(0.5, abs=0.05)
    blank = tmp_path / "zero.npy"
    np.save(blank, np.zeros((64, 64), np.float32))
    result = CliRunner().invoke(app, ["calibrate", str(blank), "--mtf"])
    assert result.exit_code == 2 and "no counts" in result.output
