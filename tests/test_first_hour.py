"""A new user's first hour: the resume hint works, frames too small for pop-out are one
clear error, an interrupt always ends with the summary and exit code 130 (start-up included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from typer.testing import CliRunner

from stream3d import config as config_mod
from stream3d.cli import app
from stream3d.errors import UserError
from stream3d.io.movies import write_mrc_movie
from stream3d.store import RawFrame, RunStore, Status, open_run
from stream3d.stream import RunOptions, Stages, ZmqSource, run_pipeline
from stream3d.stream.protocol import encode_end, encode_frame, encode_start
from stream_helpers import RefinerDouble, free_port, popout_double

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
runner = CliRunner()
DOUBLES = Stages(popout=popout_double, refiner=RefinerDouble)


def stream3d(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream3d", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 90) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, out, err


# ------------------------------------------------------------------ 11. the resume hint works
def test_resuming_a_store_uses_its_own_config_unless_told_otherwise(tmp_path):
    sets = ["sample.slices=3", "popout.patch=16", "popout.step=8", "microscope.defocus=1500"]
    cfg = config_mod.load(None, sets)
    out = tmp_path / "run.zarr"
    store = RunStore.open(out, cfg)
    store.append([RawFrame("m", i, 0.1 * i, np.full((16, 16), i, np.uint16)) for i in range(2)])
    for t in range(2):
        store.write_result(t, status=Status.REFINED, volume=np.zeros((3, 16, 16)), loss=0.0)
    store.close()
    # The hint printed after an interrupt, run exactly as printed: the store's own config.
    result = runner.invoke(app, ["reconstruct", str(out), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 refined, 0 skipped, 0 failed, 0 pending" in result.output
    # Told otherwise (--set amends the store's config): a different physics is still refused.
    other = runner.invoke(app, ["reconstruct", str(out), "--out", str(out), "--quiet",
                                "--set", "sample.slices=32"])
    assert other.exit_code == 2 and "recorded with sample.slices=3" in other.output


# ------------------------------------------------------- 12. frames smaller than popout.patch
def test_frames_smaller_than_the_patch_are_one_line_and_exit_2(tmp_path):
    movie = write_mrc_movie(tmp_path / "m.mrc", np.ones((3, 32, 40), np.uint16), pixel_size=1.0)
    result = runner.invoke(app, ["reconstruct", str(movie), "--out", str(tmp_path / "r.zarr"),
                                 "--quiet"])
    assert result.exit_code == 2
    # The movie's calibrations and dose check may be reported first; one error line, last.
    lines = result.output.strip().splitlines()
    assert [line for line in lines if "error" in line] == [lines[-1]] == [
        "stream3d: error: frames are 32 x 40 px, smaller than popout.patch = 64 px: set "
        "popout.patch <= 32 (and popout.step <= it), or record with --record-only"]
    assert not (tmp_path / "r.zarr").exists()  # checked before anything was written


def test_a_live_run_of_too_small_frames_stops_at_once_keeping_the_raw_frames(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    frames = np.arange(4 * 20 * 20, dtype=np.uint16).reshape(4, 20, 20)

    def send():
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.connect(address)
        sock.send_multipart(encode_start(1))
        for n in range(4):
            sock.send_multipart(encode_frame(1, n, float(n), frames[n]))
        sock.send_multipart(encode_end(1, 4))
        sock.close()
        ctx.term()

    sender = threading.Thread(target=send)
    sender.start()
    cfg = config_mod.load(None, ["sample.slices=2", "popout.patch=32"])
    with pytest.raises(UserError, match="frames are 20 x 20 px, smaller than popout.patch = 32"):
        run_pipeline(ZmqSource(address, pattern="pull", bind=True), tmp_path / "r.zarr", cfg,
                     stages=DOUBLES, options=RunOptions(idle_timeout=20))
    sender.join(10)
    g = open_run(tmp_path / "r.zarr")
    n = g["frames"].shape[0]
    assert n >= 1  # whatever came before the stop is stored raw, pending
    np.testing.assert_array_equal(g["frames"][:], frames[:n])
    assert (g["status"][:] == Status.PENDING).all()


# ---------------------------------------------- 13 and 16. interrupts: summary and exit 130
def test_an_interrupt_before_the_run_starts_still_ends_with_a_closed_store_and_a_summary(
        tmp_path):
    stop = threading.Event()
    stop.set()  # as if Ctrl-C came during start-up
    summary = run_pipeline(ZmqSource(str(free_port()), pattern="pull", bind=True),
                           tmp_path / "r.zarr", config_mod.load(None, ["sample.slices=2"]),
                           options=RunOptions(reconstruct=False), interrupt=stop)
    assert summary.interrupted and summary.reason == "interrupted (Ctrl-C)"
    assert open_run(tmp_path / "r.zarr").metadata.consolidated_metadata is not None


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_live_interrupted_as_soon_as_its_store_exists_exits_130_with_the_summary(tmp_path, sig):
    out = tmp_path / "run.zarr"
    live = stream3d("live", "--bind", str(free_port()), "--pattern", "pull", "--out", str(out),
                    "--record-only", "--set", "sample.slices=2")
    try:
        _wait_for(out / "zarr.json")
        live.send_signal(sig)  # during start-up: no sleep
    finally:
        rc, stdout, stderr = finish(live)
    assert rc == 130, (stdout, stderr)
    assert "stopped       interrupted" in stdout and "Traceback" not in stderr
    assert open_run(out).metadata.consolidated_metadata is not None


def test_reconstruct_and_camera_interrupted_exit_130_with_their_summaries(tmp_path):
    movie = write_mrc_movie(tmp_path / "m.mrc", np.ones((400, 16, 16), np.uint16), pixel_size=1.0)
    out = tmp_path / "run.zarr"
    rec = stream3d("reconstruct", str(movie), "--out", str(out), "--quiet",
                   "--set", "sample.slices=2", "--set", "popout.patch=16",
                   "--set", "popout.step=8", "--set", "refine.iterations=0")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and rec.poll() is None:
            try:
                if open_run(out).attrs["stream3d"]["frames"] > 0:
                    break
            except Exception:  # noqa: BLE001 - not there yet
                pass
            time.sleep(0.05)
        rec.send_signal(signal.SIGINT)
    finally:
        rc, stdout, stderr = finish(rec)
    assert rc == 130, (stdout, stderr)
    assert "stopped       interrupted" in stdout and "Traceback" not in stderr

    address = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(address)
    cam = stream3d("camera", str(movie), "--endpoint", address, "--fps", "20", "--wait", "60")
    try:
        assert sub.poll(60_000), "the camera never sent"
        sub.recv_multipart()
        cam.send_signal(signal.SIGINT)
        rc, stdout, stderr = finish(cam)
        heads = []
        while sub.poll(2000):
            heads.append(sub.recv_multipart()[0])
    finally:
        sub.close()
        ctx.term()
    assert rc == 130, (stdout, stderr)
    assert "interrupted" in stdout and "sent " in stdout and "Traceback" not in stderr
    assert b'"htype":"end"' in heads[-1]  # the series was ended properly


# ------------------------------------------------------------------ 14. status and progress
def _snapshot(**kw):
    from stream3d.stream.pipeline import Snapshot

    base = dict(received=123456, malformed=12, gaps=345, duplicates=0, reconstructed=120000,
                skipped=3000, failed=17, lag=4567, ingest_fps=950.0, recon_fps=12.34,
                idle_s=9.0, elapsed_s=100.0, stored=123456)
    return Snapshot(**{**base, **kw})


@pytest.mark.parametrize("width", [200, 100, 60, 30])
def test_the_status_line_fits_the_terminal_in_whole_words(width):
    import io

    from rich.console import Console

    from stream3d.stream.status import _StatusLine, status_text

    snap = _snapshot()
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(_StatusLine(lambda: snap, total=130000))
    lines = console.file.getvalue().splitlines()
    line = lines[-1]
    assert len(line) <= width and line == status_text(snap, 130000, width)
    full = status_text(snap, 130000)
    words = set(full.split()) | set(status_text(snap, 130000, 10**9 - 1).split())
    short = " ".join(f"{s} {v}" for _, s, v in __import__(
        "stream3d.stream.status", fromlist=["status_parts"]).status_parts(snap, 130000))
    assert set(line.split()) <= words | set(short.split())  # no word cut in half
    assert "120000/130000" in line or width < 60
    if width >= 200:
        assert line == full and "nothing received for 9 s" in line


def test_a_replay_never_says_nothing_received():
    from stream3d.stream.status import status_text

    assert "idle" not in status_text(_snapshot(live=False), width=60)
    assert "nothing received" not in status_text(_snapshot(live=False))
    assert "nothing received for 9 s" in status_text(_snapshot(live=True))


def test_without_a_terminal_progress_lines_come_every_few_seconds(capsys):
    from stream3d.stream.status import live_status

    with live_status(lambda: _snapshot(live=False), total=130000, every=0.05):
        time.sleep(0.4)
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 3
    assert err[0] == ("stream3d: received 123456  malformed 12  gaps 345  reconstructed "
                      "120000/130000  skipped 3000  failed 17  lag 4567  frames/s 12.34")
