"""Live runs a microscopist can trust: a mistyped detector host is one line and exit 2 within
seconds; a live run under policy "all" that falls behind says so once and names
stream.policy = "latest" (a replay, which is behind by design, does not)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from stream3d.io.movies import write_mrc_movie
from stream3d.stream import Camera, FileSource, RunOptions, Stages, ZmqSource, play, run_pipeline
from stream_helpers import REAL, RefinerDouble, free_port, popout_double

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


class SlowRefiner(RefinerDouble):
    delay = 0.05  # s per frame: 20 frames/s, against a camera at 400 frames/s


SLOW = Stages(popout=popout_double, refiner=SlowRefiner)
FRAMES = np.random.default_rng(0).poisson(1000, (40, 32, 32)).astype(np.uint16)
CFG = REAL.replace("popout", patch=16, step=8)


def behind_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "falling behind" in r.getMessage()]


def live(out: Path, cfg) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    cam = Camera(address, pattern="push", wait=30.0)
    thread = threading.Thread(target=lambda: (play(FRAMES, cam, fps=400.0), cam.close()),
                              daemon=True)
    thread.start()
    try:
        summary = run_pipeline(ZmqSource(address, pattern="pull"), out, cfg, stages=SLOW,
                               options=RunOptions(idle_timeout=20.0))
    finally:
        thread.join(30)
    assert summary.stored == len(FRAMES)


def test_a_live_run_that_falls_behind_warns_once_and_names_policy_latest(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="stream3d")
    live(tmp_path / "run.zarr", CFG)
    (message,) = behind_warnings(caplog)  # once, though the lag stays above the mark
    assert message.startswith("falling behind the detector: ")
    assert "--set stream.policy=latest" in message and 'stream.policy = "all"' in message
    lag = int(message.split(": ")[1].split()[0])
    assert lag >= 20


def test_policy_latest_and_replays_are_not_warned(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="stream3d")
    live(tmp_path / "latest.zarr", CFG.replace("stream", policy="latest"))
    movie = write_mrc_movie(tmp_path / "m.mrc", FRAMES, pixel_size=1.0)
    run_pipeline(FileSource(movie, frame_interval=0.1), tmp_path / "replay.zarr", CFG,
                 stages=SLOW)
    assert behind_warnings(caplog) == []


def test_live_connect_to_a_host_that_does_not_resolve_is_one_line_exit_2(tmp_path):
    started = time.monotonic()
    got = subprocess.run([sys.executable, "-m", "stream3d", "live", "--connect",
                          "tcp://nohost.invalid:5555", "--out", str(tmp_path / "run.zarr")],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15  # not --idle-timeout, not for ever
    assert got.returncode == 2
    assert got.stderr.strip() == ("stream3d: error: --connect tcp://nohost.invalid:5555: the "
                                  "host 'nohost.invalid' does not resolve (a typo in the "
                                  "detector's name or address?)")
    assert not (tmp_path / "run.zarr").exists()
