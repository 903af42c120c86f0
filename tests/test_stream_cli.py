"""The streaming commands as a user runs them: `camera` and `live` as separate processes over
loopback, SIGTERM leaving a consistent store, and one-line errors for bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.io.movies import write_mrc_movie
from stream3d.store import RawFrame, RunStore, Status, open_run
from stream3d.stream.commands import reconstruct
from stream_helpers import REAL, REAL_SETS, free_port, hrtem_movie

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
runner = CliRunner()


def stream3d(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream3d", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, out, err


def test_camera_and_live_processes_record_a_movie_then_reconstruct_in_place(tmp_path):
    frames = hrtem_movie(10, seed=3)
    movie = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    sets = [a for s in REAL_SETS for a in ("--set", s)]
    out = tmp_path / "run.zarr"
    address = f"tcp://127.0.0.1:{free_port()}"
    live = stream3d("live", "--connect", address, "--pattern", "sub", "--out", str(out),
                    "--record-only", "--idle-timeout", "60", *sets)
    camera = stream3d("camera", str(movie), "--endpoint", address, "--pattern", "pub",
                      "--fps", "50", "--drop", "4", "--corrupt", "byte_count,not_json",
                      "--wait", "60", *sets)
    cam_rc, cam_out, cam_err = finish(camera)
    live_rc, live_out, live_err = finish(live)
    assert cam_rc == 0, cam_err
    assert "sent 9 frames" in cam_out and "1 dropped" in cam_out and "2 malformed" in cam_out
    assert live_rc == 0, live_err
    assert "end of series 1" in live_out
    assert "received 9, malformed 2 (byte_count 1, not_json 1), gaps 1, duplicates 0" in live_out
    assert "9 pending" in live_out and f"stream3d reconstruct {out} --out {out}" in live_out
    g = open_run(out)
    kept = [i for i in range(10) if i != 4]
    np.testing.assert_array_equal(g["frames"][:], frames[kept])
    np.testing.assert_array_equal(g["frame_id"][:], kept)
    assert (g["status"][:] == Status.PENDING).all() and np.isnan(g["volume"][:]).all()

    # The recorded frames are reconstructed later, in place, by the real stages.
    summary = reconstruct(out, out, REAL, show_status=False)
    assert summary.session_received == 0 and summary.statuses["refined"] == 9
    g = open_run(out)
    np.testing.assert_array_equal(g["frames"][:], frames[kept])  # untouched
    assert np.isfinite(g["volume"][:]).all() and np.isfinite(g["popout"][:]).all()
    assert g.attrs["stream3d"]["counters"] == {"received": 9, "malformed": 2, "gaps": 1,
                                               "duplicates": 0, "skipped": 0, "failed": 0}


def test_sigterm_stops_live_with_a_consistent_store_and_a_summary(tmp_path):
    out = tmp_path / "run.zarr"
    live = stream3d("live", "--bind", str(free_port()), "--pattern", "pull", "--out", str(out),
                    "--record-only")
    try:
        deadline = time.monotonic() + 60
        while not (out / "zarr.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        live.send_signal(signal.SIGTERM)
    finally:
        rc, stdout, stderr = finish(live)
    assert rc == 130, stderr  # an interrupted run says so, like reconstruct and camera
    assert "interrupted" in stdout and "Traceback" not in stderr
    group = zarr.open_group(out, mode="r")
    assert group.metadata.consolidated_metadata is not None  # closed properly
    assert group.attrs["stream3d"]["counters"]["received"] == 0


@pytest.mark.parametrize("args, message", [
    (["live", "--out", "{tmp}/r.zarr"], "exactly one of --connect"),
    (["live", "--connect", "nonsense", "--out", "{tmp}/r.zarr"], "must look like tcp://"),
    (["live", "--connect", "tcp://127.0.0.1:1", "--pattern", "req", "--out", "{tmp}/r.zarr"],
     "--pattern 'req' must be sub or pull"),
    (["reconstruct", "{tmp}/missing.mrc", "--out", "{tmp}/r.zarr"], "does not exist"),
    (["reconstruct", "{tmp}/notes.txt", "--out", "{tmp}/r.zarr"], "unknown format"),
    (["reconstruct", "{tmp}/m.mrc", "--out", "{tmp}/notes.txt"], "not a Zarr run store"),
    (["reconstruct", "{tmp}/m.mrc", "--out", "{tmp}/r.zarr", "--set", "stream.window=0"],
     "stream.window must be >= 1"),
    (["camera", "{tmp}/m.mrc", "--corrupt", "gossip"], "'gossip' is not a kind"),
    (["camera", "{tmp}/m.mrc", "--drop", "x"], "frame numbers"),
    (["camera", "{tmp}/m.mrc", "--fps", "-1"], "--fps must be >= 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    write_mrc_movie(tmp_path / "m.mrc", np.zeros((2, 8, 8), np.uint16), pixel_size=1.0)
    (tmp_path / "notes.txt").write_text("not a movie")
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_replaying_a_movie_of_other_frames_into_a_store_is_refused(tmp_path):
    other = write_mrc_movie(tmp_path / "b.mrc", np.ones((2, 8, 6), np.uint16), pixel_size=1.0)
    cfg = config_mod.load(None, ["sample.slices=2"])
    store = RunStore.open(tmp_path / "r.zarr", cfg)
    store.append([RawFrame("a.mrc", 0, 0.0, np.ones((8, 8), np.uint16))])
    store.close()
    result = runner.invoke(app, ["reconstruct", str(other), "--out", str(tmp_path / "r.zarr"),
                                 "--set", "sample.slices=2"])
    assert result.exit_code == 2
    assert "has uint16 (8, 6) frames" in result.output and "holds uint16 (8, 8)" in result.output


def test_live_reports_a_port_it_cannot_bind(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["live", "--bind", str(port), "--pattern", "pull",
                                     "--record-only", "--out", str(tmp_path / "r.zarr")])
    assert result.exit_code == 2
    assert f"cannot bind to tcp://127.0.0.1:{port}" in result.output


def test_help_teaches_the_streaming_commands():
    for command in ("reconstruct", "live", "camera"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
    assert "resumes" in runner.invoke(app, ["reconstruct", "--help"]).output


def test_an_unreachable_dask_scheduler_is_one_clear_error():
    from stream3d.errors import UserError
    from stream3d.stream.cluster import dask_client

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=f"cannot reach the dask scheduler {address}"):
        with dask_client(address, threads=1, timeout=1.0):
            pass
