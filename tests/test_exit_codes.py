"""Exit codes of ``reconstruct`` (DESIGN.md), run as a user runs the command (a subprocess):
0 every frame done, 1 the run ended with failed frames (how many, no traceback, a hint that is
not "run the same again"), 2 bad input or a refused start that leaves nothing on disk blocking
the corrected retry and names the wrong key. 130 (interrupted) is in test_first_hour.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from stream3d.io.movies import write_mrc_movie
from stream_helpers import REAL, REAL_SETS, hrtem_movie

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
SETS = [a for s in REAL_SETS for a in ("--set", s)]


def reconstruct(movie: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream3d", "reconstruct", str(movie), "--out",
                           str(out), "--quiet", *SETS, *extra], env=ENV, capture_output=True,
                          text=True, timeout=180)


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("stream3d: error:")]


def test_failed_frames_exit_1_say_how_many_and_why_without_a_traceback(tmp_path):
    frames = hrtem_movie(3).astype(np.float32)
    frames[1:] = np.nan  # two frames no reconstruction can use
    movie = write_mrc_movie(tmp_path / "nan.mrc", frames, pixel_size=REAL.sample.pixel_size)
    out = tmp_path / "run.zarr"
    got = reconstruct(movie, out)
    assert got.returncode == 1, got.stdout + got.stderr
    assert "Traceback" not in got.stderr and "Traceback" not in got.stdout
    assert "1 refined, 0 skipped, 2 failed, 0 pending" in got.stdout
    (failed,) = [ln for ln in got.stdout.splitlines() if ln.startswith("failed ")]
    assert "2 frame(s) failed (first: frame 1: frame contains NaN or infinite counts)" in failed
    assert "Run unchanged they fail again" in failed  # not "run the same command again"
    assert not any(ln.startswith("next ") for ln in got.stdout.splitlines())
    warned = [ln for ln in got.stderr.splitlines() if "failed" in ln]
    assert warned == ["stream3d: frame 1 failed: frame contains NaN or infinite counts; later "
                      "failures are only counted"]
    assert list(np.asarray(zarr.open_group(out, mode="r")["status"])) == [1, 3, 3]


@pytest.mark.parametrize("bad, key", [
    ("microscope.defocus=1e30", "microscope.defocus"),  # refused by the config check
    ("refine.tile=20", "refine.tile"),  # refused once the store exists: the store goes too
])
def test_a_refused_start_names_the_key_and_leaves_nothing_that_blocks_the_retry(
        tmp_path, bad, key):
    movie = write_mrc_movie(tmp_path / "m.mrc", hrtem_movie(1),
                            pixel_size=REAL.sample.pixel_size)
    out = tmp_path / "run.zarr"
    got = reconstruct(movie, out, "--set", bad)
    assert got.returncode == 2, got.stdout + got.stderr
    (line,) = error_lines(got.stderr)
    assert line.startswith(f"stream3d: error: {key} "), line
    assert "Traceback" not in got.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mrc"]  # no store, no hidden one
    retry = reconstruct(movie, out)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "1 refined, 0 skipped, 0 failed, 0 pending" in retry.stdout


def test_absurd_optics_are_refused_in_one_line_naming_the_key():
    from stream3d import config as config_mod

    cases = {"microscope.defocus=1e30": "microscope.defocus = 1e+30 Å is not physically "
             "sensible: expected -1e+06 to 1e+06 Å",
             "microscope.energy=300": "microscope.energy = 300 eV is not physically sensible",
             "microscope.cs=1e12": "microscope.cs = 1e+12 Å is not physically sensible",
             "sample.pixel_size=1e9": "sample.pixel_size = 1e+09 Å is not physically sensible",
             "detector.dose=1e12": "detector.dose = 1e+12 e/Å² per frame is not physically"}
    for text, message in cases.items():
        with pytest.raises(config_mod.ConfigError) as err:
            config_mod.load(None, [text])
        assert str(err.value).startswith(message), str(err.value)
    assert config_mod.load(None, ["microscope.defocus=-3e5"]).microscope.defocus == -3e5


def test_a_halo_made_huge_by_the_optics_names_the_optics_key():
    from stream3d import config as config_mod
    from stream3d.errors import UserError
    from stream3d.refine.tiles import check_tile

    with pytest.raises(UserError) as err:
        check_tile(config_mod.load(None, ["microscope.defocus=5e5"]))
    assert str(err.value).startswith("refine.tile = 512 px leaves no interior")
    assert str(err.value).endswith("the halo comes from microscope.defocus = 500000 Å: is that "
                                   "value meant?")


def test_an_all_zero_frame_is_failed_with_its_reason_not_reported_refined(tmp_path):
    frames = hrtem_movie(2)
    frames[1] = 0  # beam blanked: no counts at all
    movie = write_mrc_movie(tmp_path / "zero.mrc", frames, pixel_size=REAL.sample.pixel_size)
    out = tmp_path / "run.zarr"
    got = reconstruct(movie, out)
    assert got.returncode == 1, got.stdout + got.stderr
    assert "1 refined, 0 skipped, 1 failed, 0 pending" in got.stdout
    assert "(first: frame 1: frame has no counts (all zero): nothing to reconstruct" in got.stdout
    g = zarr.open_group(out, mode="r")
    assert list(np.asarray(g["status"])) == [1, 3]
    assert np.isnan(np.asarray(g["volume"][1])).all()
