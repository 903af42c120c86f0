"""The command line: help that teaches, the demo's outputs, bad input -> one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import mrcfile
import numpy as np
import pytest
from typer.testing import CliRunner

from stream3d.cli import app

runner = CliRunner()


def test_help_lists_commands_and_explains_overrides():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output and "--set" in result.output


def test_demo_writes_png_mrc_and_config(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--set", "detector.dose=1000"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "frame.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with mrcfile.open(tmp_path / "frame.mrc") as mrc:
        frame = np.asarray(mrc.data)
        assert float(mrc.voxel_size.x) == pytest.approx(1.0)
    assert frame.shape == (256, 256)
    # Counts at 1000 e/Å² on 1 Å pixels: the frame mean is near 1000 (specimen absorbs a little).
    assert 900 < frame.mean() < 1005
    assert "dose = 1000.0" in (tmp_path / "config.toml").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--set", "microscope.energy=-1"], "microscope.energy must be > 0"),
        (["demo", "--config", "/nonexistent/x.toml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stream3d", *args, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
