"""`stream3d calibrate --write` writes a config that reconstructs the calibrated frames
correctly: the rings give the scatterer's effective defocus (lens defocus - height), so the lens
defocus written adds the scatterer's height (default: the middle of the cell). Run as a user
runs it: simulate, calibrate --write, reconstruct --config, then the heights against the truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calibrate_frames import effective_defocus, film_config, film_frame
from stream3d.analysis.truth import compare_to_truth

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
# Three discs between 40 and 280 Å above the exit plane in a 320 Å cell (middle 160 Å), 128 px.
SIM = ["simulate.specimen=discs", "simulate.frames=1", "simulate.ny=128", "simulate.nx=128",
       "sample.slices=16", "simulate.depth_low=40", "simulate.depth_high=280",
       "refine.device=cpu", "refine.iterations=0"]


def stream3d(*args: str) -> subprocess.CompletedProcess:
    got = subprocess.run([sys.executable, "-m", "stream3d", *args], env=ENV,
                         capture_output=True, text=True, timeout=180)
    assert got.returncode == 0, got.stdout + got.stderr
    return got


def test_calibrate_write_then_reconstruct_puts_the_material_at_its_true_height(tmp_path):
    sim, lens, run = tmp_path / "sim", tmp_path / "lens.toml", tmp_path / "run.zarr"
    stream3d("simulate", "--out", str(sim), *[a for s in SIM for a in ("--set", s)])
    stream3d("calibrate", str(sim / "movie.mrc"), "--config", str(sim / "config.toml"),
             "--write", str(lens))
    written = tomllib.loads(lens.read_text())["microscope"]["defocus"]
    assert written == pytest.approx(2000.0, abs=60)  # the simulated lens, not ~1830 (effective)
    assert "+ height 160 Å" in lens.read_text()
    stream3d("reconstruct", str(sim / "movie.mrc"), "--config", str(lens), "--out", str(run),
             "--quiet")
    (row,) = compare_to_truth(run, sim / "truth.zarr")
    assert row.popout_depth < 25.0  # mean column height error, Å (the effective defocus: ~170)


def test_height_option_is_added_to_the_effective_defocus_and_checked(tmp_path):
    cfg = film_config(defocus=2500.0, astigmatism=0.0, size=256)
    frame = tmp_path / "film.npy"
    np.save(frame, film_frame(cfg))
    lens = tmp_path / "lens.toml"
    sets = ["--set", "microscope.defocus=2500", "--set", "sample.slices=1",
            "--set", "sample.slice_thickness=20"]
    got = stream3d("calibrate", str(frame), "--write", str(lens), "--height", "20", "--json",
                   *sets)
    summary = json.loads(got.stdout)
    assert summary["defocus"] == pytest.approx(effective_defocus(cfg), abs=30)
    assert summary["lens_defocus"] == pytest.approx(summary["defocus"] + 20.0)
    written = tomllib.loads(lens.read_text())["microscope"]["defocus"]
    assert written == pytest.approx(summary["defocus"] + 20.0, abs=0.06)
    bad = subprocess.run([sys.executable, "-m", "stream3d", "calibrate", str(frame), "--height",
                          "500", *sets], env=ENV, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("stream3d: error: --height 500 Å must lie in the cell, 0 to "
                                  "20 Å (sample.slices x sample.slice_thickness) above the exit "
                                  "plane")
