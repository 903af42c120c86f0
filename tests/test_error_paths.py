"""Every error path a user can walk into with a path gives one line naming the path and what is
wrong with it, exit code 2: never a raw "[Errno N] ..." text, never a traceback, never a hidden
temporary name (such as the run store's ``.RUN.zarr.creating-PID`` sibling)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from stream3d import config
from stream3d.cli import app
from stream3d.errors import os_error_line
from stream3d.io.movies import write_mrc_movie
from stream3d.store import RawFrame, RunStore, Status

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    """A small movie, a run store of it, a plain file and a folder."""
    frames = np.random.default_rng(0).poisson(1000, (2, 64, 64)).astype(np.uint16)
    movie = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    cfg = config.load(None, ["sample.slices=3"])
    store = RunStore.open(tmp_path / "run.zarr", cfg)
    store.append([RawFrame("m", i, 0.1 * i, frames[i]) for i in range(2)])
    for t in range(2):
        store.write_result(t, status=Status.REFINED, volume=np.zeros((3, 64, 64)), loss=0.0)
    store.close()
    (tmp_path / "notes.md").write_text("a file\n")
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "frame.npy", frames[0])
    return tmp_path


CASES = [
    (["reconstruct", "{d}/m.mrc", "--out", "/proc/run.zarr", "--quiet"],
     "/proc/run.zarr: does not exist, and cannot be created there"),
    (["reconstruct", "{d}/m.mrc", "--out", "{d}/notes.md/run.zarr", "--quiet"],
     "{d}/notes.md: is a file, not a folder"),
    (["analyze", "{d}/run.zarr", "--out", "{d}/notes.md"], "{d}/notes.md: is a file, not a folder"),
    (["analyze", "{d}/run.zarr", "--out", "/proc/report"],
     "/proc/report: does not exist, and cannot be created there"),
    (["demo", "--out", "/proc/demo"], "/proc/demo: does not exist, and cannot be created there"),
    (["calibrate", "{d}/frame.npy", "--write", "/proc/x/lens.toml"],
     "/proc/x: does not exist, and cannot be created there"),
    (["demo", "--config", "{d}/folder", "--out", "{d}/demo"],
     "config file {d}/folder cannot be read: {d}/folder: is a folder, where a file was expected"),
]


@pytest.mark.parametrize("args, line", CASES, ids=[" ".join(c[0][:1] + c[0][2:4]) for c in CASES])
def test_path_errors_are_one_line_naming_the_path(files, args, line):
    result = runner.invoke(app, [a.format(d=files) for a in args])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("stream3d: error:")]
    assert errors == [f"stream3d: error: {line.format(d=files)}"], result.output
    assert "Errno" not in result.output and "Traceback" not in result.output
    assert not list(files.glob(".*creating*"))


def test_os_error_line_words_each_errno_and_hides_the_temporary_store_name():
    import errno

    hidden = FileNotFoundError(errno.ENOENT, "No such file or directory",
                               "/data/.run.zarr.creating-4242")
    assert os_error_line(hidden) == "/data/run.zarr: does not exist, and cannot be created there"
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x")) == (
        "/x: permission denied: choose a place you can write to")
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device", "/x")) == (
        "/x: no space left on that disk")
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/x")) == (
        "/x: is on a read-only file system: choose another place")
