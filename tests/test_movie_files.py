"""Vendor movie files: ``info --json`` and ``reconstruct --record-only`` on every format, each
checked against what the format's own library reads (rosettasciio, tifffile, mrcfile, h5py).

Real files (a Gatan DM4 stack, a TIA SER/EMI diffraction series) come from ../shared/data;
NCEM EMD and TIFF are written by those libraries' writers; the Velox EMD is written with h5py
in Velox's layout (Data/Image/<id>/Data is (y, x, frame): frames are its LAST axis).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from stream3d.io.movies import open_movie, write_mrc_movie
from stream3d.store import open_run

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "movie-files"
DM4 = DATA / "test-2.dm4"
EMI = DATA / "128x128x5-diffraction_preview.emi"
SER = DATA / "128x128x5-diffraction_preview_1.ser"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared movie files not present")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream3d", *args], env=ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def info_json(path: Path, *sets: str) -> dict:
    args = ["info", str(path), "--json"]
    for s in sets:
        args += ["--set", s]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def record(path: Path, out: Path, *sets: str) -> subprocess.CompletedProcess:
    args = ["reconstruct", str(path), "--out", str(out), "--record-only", "--quiet"]
    for s in sets:
        args += ["--set", s]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return done


def rsciio_frames(reader, path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(reader(str(path), lazy=False)[0]["data"])


# ---------------------------------------------------------------------------- writers
def write_velox(path: Path, stack: np.ndarray, *, pixel_m: float, exposure_s: float) -> None:
    """A minimal Velox EMD: the image stack stored (y, x, frame), one chunk per frame, with
    Velox's JSON metadata (pixel size in metres, detector exposure time)."""
    import h5py

    meta = {"BinaryResult": {"PixelSize": {"width": str(pixel_m), "height": str(pixel_m)},
                             "PixelUnitX": "m", "PixelUnitY": "m", "DetectorIndex": "0",
                             "Offset": {"x": "0", "y": "0"}},
            "Detectors": {"Detector-0": {"DetectorName": "BM-Ceta", "ExposureTime":
                                         str(exposure_s)}},
            "Scan": {}, "Instrument": {"InstrumentModel": "Talos F200X"},
            "Optics": {"AccelerationVoltage": "200000"},
            "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}}}
    text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with h5py.File(path, "w") as f:
        f["Version"] = np.array([json.dumps({"format": "Velox", "version": "11"}).encode()])
        group = f.create_group("Data/Image/6a1f3b2c")
        group.create_dataset("Data", data=np.moveaxis(stack, 0, -1),
                             chunks=(*stack.shape[1:], 1))
        md = np.zeros((text.size, stack.shape[0]), np.uint8)
        md[:, :] = text[:, None]
        group["Metadata"] = md


def write_ncem(path: Path, stack: np.ndarray, *, pixel_nm: float, interval_s: float) -> None:
    from rsciio.emd import file_writer

    t, ny, nx = stack.shape
    file_writer(str(path), {"data": stack, "axes": [
        {"name": "t", "size": t, "scale": interval_s, "offset": 0, "units": "s", "navigate": True},
        {"name": "y", "size": ny, "scale": pixel_nm, "offset": 0, "units": "nm", "navigate": False},
        {"name": "x", "size": nx, "scale": pixel_nm, "offset": 0, "units": "nm",
         "navigate": False}],
        "metadata": {"General": {"title": "stack"}, "Signal": {}}, "original_metadata": {}})


def stack(n=5, shape=(24, 40), dtype=np.uint16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(80, (n, *shape)).astype(dtype)


# ---------------------------------------------------------------------------- real files
@needs_data
def test_real_dm4_stack(tmp_path):
    from rsciio.digitalmicrograph import file_reader

    facts = info_json(DM4, "sample.pixel_size=0.7")
    assert facts["frames"] == 2 and facts["shape"] == [2, 2] and facts["dtype"] == "float32"
    assert facts["pixel_size"] == 0.7 and not facts["from_metadata"]["pixel_size"]  # uncalibrated
    assert facts["format"] == "Gatan DM4"
    record(DM4, tmp_path / "run.zarr")
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], rsciio_frames(file_reader, DM4))
    assert g["frames"].dtype == np.float32


@needs_data
@pytest.mark.parametrize("path", [EMI, SER])
def test_real_tia_series_is_not_given_its_reciprocal_calibration_as_a_pixel_size(tmp_path, path):
    from rsciio.tia import file_reader

    facts = info_json(path, "sample.pixel_size=1.3")
    assert facts["frames"] == 5 and facts["shape"] == [128, 128] and facts["dtype"] == "int32"
    assert facts["pixel_size"] == 1.3 and facts["from_metadata"]["pixel_size"] is False
    assert any("reciprocal" in n for n in facts["notes"])
    assert facts["instrument"] == "Microscope TalosF200X 200 kV D6308 XTwin"
    assert facts["detector"] == "BM-Ceta"
    done = record(path, tmp_path / "run.zarr", "sample.pixel_size=1.3")
    assert "reciprocal" in done.stderr
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], rsciio_frames(file_reader, EMI))
    assert g.attrs["stream3d"]["config"]["sample"]["pixel_size"] == 1.3


@needs_data
def test_a_ser_without_its_emi_does_not_trust_its_calibration(tmp_path):
    import shutil

    alone = tmp_path / "series_1.ser"
    shutil.copy(SER, alone)  # the calibration's unit (1/m here) lives in the missing .emi
    facts = info_json(alone, "sample.pixel_size=1.3")
    assert facts["frames"] == 5 and facts["pixel_size"] == 1.3
    assert any("without its EMI" in n for n in facts["notes"])


# ---------------------------------------------------------------------------- made files
def test_velox_emd_frames_are_the_last_axis_of_data(tmp_path):
    import h5py

    frames = stack(6)
    path = tmp_path / "ceta.emd"
    write_velox(path, frames, pixel_m=2.5e-11, exposure_s=0.04)
    with h5py.File(path) as f:
        raw = f["Data/Image/6a1f3b2c/Data"][:]
    assert raw.shape == (24, 40, 6)
    facts = info_json(path)
    assert facts["format"] == "Velox EMD"
    assert facts["frames"] == 6 and facts["shape"] == [24, 40]
    assert facts["pixel_size"] == pytest.approx(0.25) and facts["from_metadata"]["pixel_size"]
    assert facts["frame_interval"] == pytest.approx(0.04)
    assert facts["instrument"] == "Talos F200X" and facts["detector"] == "BM-Ceta"
    record(path, tmp_path / "run.zarr")
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], np.moveaxis(raw, -1, 0))
    assert g.attrs["stream3d"]["config"]["sample"]["pixel_size"] == pytest.approx(0.25)


def test_ncem_emd(tmp_path):
    from rsciio.emd import file_reader

    frames = stack(4, dtype=np.float32)
    path = tmp_path / "ncem.emd"
    write_ncem(path, frames, pixel_nm=0.12, interval_s=0.5)
    facts = info_json(path)
    assert facts["format"] == "NCEM EMD" and facts["frames"] == 4 and facts["dtype"] == "float32"
    assert facts["pixel_size"] == pytest.approx(1.2) and facts["frame_interval"] == 0.5
    assert facts["from_metadata"] == {"pixel_size": True, "frame_interval": True, "dose": False,
                                     "energy": False}
    record(path, tmp_path / "run.zarr")
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr")["frames"][:],
                                  rsciio_frames(file_reader, path))


def test_imagej_tiff_stack(tmp_path):
    import tifffile

    frames = stack(7, dtype=np.uint8)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, frames, imagej=True, resolution=(1 / 0.05, 1 / 0.05),
                     metadata={"unit": "nm", "finterval": 0.25, "axes": "TYX"})
    facts = info_json(path)
    assert facts["frames"] == 7 and facts["shape"] == [24, 40] and facts["dtype"] == "uint8"
    assert facts["pixel_size"] == pytest.approx(0.5) and facts["frame_interval"] == 0.25
    record(path, tmp_path / "run.zarr", "sample.pixel_size=0.5")
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr")["frames"][:],
                                  tifffile.imread(path))


def test_ome_tiff_calibration(tmp_path):
    import tifffile

    frames = stack(3)
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(path, frames, ome=True, photometric="minisblack",
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.05, "PhysicalSizeXUnit": "nm",
                               "TimeIncrement": 20, "TimeIncrementUnit": "ms"})
    facts = info_json(path)
    assert facts["pixel_size"] == pytest.approx(0.5)
    assert facts["frame_interval"] == pytest.approx(0.02)
    assert facts["from_metadata"]["pixel_size"] and facts["from_metadata"]["frame_interval"]
    record(path, tmp_path / "run.zarr")
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr")["frames"][:],
                                  tifffile.imread(path))


def test_plain_tiff_and_compressed_tiff_read_page_by_page(tmp_path):
    import tifffile

    frames = stack(3, dtype=np.uint16)
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, frames, compression="zlib", photometric="minisblack")
    movie = open_movie(path)
    assert len(movie) == 3 and movie.pixel_size is None
    np.testing.assert_array_equal(movie[2], frames[2])
    movie.close()
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, frames[..., None].repeat(3, -1).astype(np.uint8), photometric="rgb")
    done = cli("info", str(rgb))
    assert done.returncode == 2 and "expected pages of 2D frames" in done.stderr
    facts = info_json(path, "sample.pixel_size=0.9", "stream.frame_interval=2")
    assert (facts["pixel_size"], facts["frame_interval"]) == (0.9, 2.0)
    assert facts["from_metadata"] == {"pixel_size": False, "frame_interval": False, "dose": False,
                                     "energy": False}


def test_mrc_and_run_store_info(tmp_path):
    import mrcfile

    frames = stack(4)
    path = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=0.8)
    facts = info_json(path, "sample.pixel_size=0.8", "detector.dose=125")
    assert facts["pixel_size"] == pytest.approx(0.8) and facts["from_metadata"]["pixel_size"]
    assert facts["dose"] == pytest.approx(frames[0].mean() / 0.8**2)
    assert facts["notes"] == []  # 125 e/Å² is what the counts say (80 / 0.64)
    far = info_json(path, "sample.pixel_size=0.8", "detector.dose=2000")
    assert any("the frames' counts say 125" in n for n in far["notes"])
    record(path, tmp_path / "run.zarr", "sample.pixel_size=0.8", "detector.dose=125")
    with mrcfile.open(path) as mrc:
        np.testing.assert_array_equal(open_run(tmp_path / "run.zarr")["frames"][:], mrc.data)
    store = info_json(tmp_path / "run.zarr")
    assert store["format"] == "stream3d run store" and store["frames"] == 4
    assert store["shape"] == [24, 40] and store["dtype"] == "uint16"
    assert store["pixel_size"] == pytest.approx(0.8)


def test_file_and_config_disagreeing_by_more_than_5_percent_is_said_once(tmp_path):
    path = write_mrc_movie(tmp_path / "m.mrc", stack(3), pixel_size=0.8)
    done = record(path, tmp_path / "a.zarr", "sample.pixel_size=1.0", "detector.dose=125")
    lines = [ln for ln in done.stderr.splitlines() if "records 0.8 Å/pixel" in ln]
    assert len(lines) == 1 and "using the file's" in lines[0]
    g = open_run(tmp_path / "a.zarr")
    assert g.attrs["stream3d"]["config"]["sample"]["pixel_size"] == pytest.approx(0.8)
    done = record(path, tmp_path / "b.zarr", "sample.pixel_size=0.82", "detector.dose=125")
    assert "records" not in done.stderr  # 2.5%: no warning, the file's value is used
    assert "pixel size 0.8 Å (file metadata)" in done.stderr


def test_dose_that_disagrees_with_the_counts_is_said_once_and_auto_takes_the_counts(tmp_path):
    frames = stack(3)  # mean 80 counts per pixel at 1 Å/pixel: 80 e/Å²
    path = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    done = record(path, tmp_path / "a.zarr", "detector.dose=2000")
    assert done.stderr.count("the frames' counts say") == 1
    done = record(path, tmp_path / "b.zarr", "detector.dose=90")
    assert "counts say" not in done.stderr  # 12%: within 20%
    done = record(path, tmp_path / "c.zarr", "detector.dose=auto")
    dose = open_run(tmp_path / "c.zarr").attrs["stream3d"]["config"]["detector"]["dose"]
    assert dose == pytest.approx(frames[0].mean())
    import tifffile

    small = tmp_path / "u8.tif"
    tifffile.imwrite(small, frames.astype(np.uint8), photometric="minisblack")
    done = record(small, tmp_path / "d.zarr", "detector.dose=300")
    assert "more than a uint8 frame holds" in done.stderr


def test_auto_dose_is_refused_where_there_are_no_frames(tmp_path):
    done = cli("simulate", "--out", str(tmp_path / "s"), "--set", "detector.dose=auto")
    assert done.returncode == 2 and 'detector.dose = "auto"' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unreadable_vendor_files_are_one_line_errors(tmp_path):
    for name in ("bad.dm4", "bad.emd", "bad.ser", "bad.tif"):
        (tmp_path / name).write_bytes(b"not a movie at all" * 10)
        done = cli("info", str(tmp_path / name))
        assert done.returncode == 2, name
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_voltage_the_file_records_is_used_and_a_disagreeing_config_is_said_once(tmp_path):
    path = tmp_path / "ceta.emd"
    write_velox(path, stack(3), pixel_m=1e-10, exposure_s=0.1)  # recorded at 200 kV
    facts = info_json(path)
    assert facts["energy"] == 200e3 and facts["from_metadata"]["energy"]
    done = record(path, tmp_path / "a.zarr", "detector.dose=80")  # the config says 300 kV
    lines = [ln for ln in done.stderr.splitlines() if "kV" in ln]
    assert lines == ["stream3d: ceta.emd was recorded at 200 kV, the config says "
                     "microscope.energy = 300000 eV (300 kV): using the file's (the wavelength, "
                     "and so every height, depends on it)"]
    g = open_run(tmp_path / "a.zarr")
    assert g.attrs["stream3d"]["config"]["microscope"]["energy"] == 200e3
    done = record(path, tmp_path / "b.zarr", "detector.dose=80", "microscope.energy=200e3")
    assert "kV" not in done.stderr  # they agree: nothing to say


def test_rosettasciio_beam_energy_is_read_in_kilovolts():
    from stream3d.io.meta import MovieMeta
    from stream3d.io.readers import _instrument_and_detector

    meta = MovieMeta()
    _instrument_and_detector({"metadata": {"Acquisition_instrument": {"TEM": {
        "beam_energy": 80.0}}}}, meta)
    assert meta.energy == 80e3


def test_calibrate_takes_the_voltage_the_file_records(tmp_path, caplog):
    from stream3d import config as config_mod
    from stream3d.calibrate.command import _recorded_energy

    path = tmp_path / "ceta.emd"
    write_velox(path, stack(2), pixel_m=1e-10, exposure_s=0.1)
    movie = open_movie(path)
    try:
        with caplog.at_level("WARNING", logger="stream3d"):
            cfg = _recorded_energy(movie, config_mod.Config(), "ceta.emd")
    finally:
        movie.close()
    assert cfg.microscope.energy == 200e3
    assert [r.getMessage() for r in caplog.records] == [
        "ceta.emd was recorded at 200 kV, the config says microscope.energy = 300000 eV: "
        "using the file's"]
