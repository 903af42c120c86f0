"""The streaming pipeline end to end: camera emulator over loopback -> ingest -> dask pop-out ->
refinement -> run store, with the real pop-out and refinement on small HRTEM frames.

Checks are exact: raw frames byte-identical to the movie, each stored pop-out volume equal to
pop-out of its own frame, counters equal to the faults injected. One test uses the exact stage
doubles of ``stream_helpers`` to check the warm-start bookkeeping bit for bit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from stream3d.io.movies import write_mrc_movie
from stream3d.ome import scale_of
from stream3d.popout import popout
from stream3d.store import Status, open_run, read_segments
from stream3d.stream import (
    Camera, FileSource, Faults, Kind, RunOptions, Stages, ZmqSource, play, run_pipeline,
)
from stream_helpers import (
    REAL, REAL_SETS, RefinerDouble, dask_processes, expected_popout, free_port, hrtem_movie,
    popout_double,
)

ROOT = Path(__file__).resolve().parents[1]
NZ = REAL.sample.slices
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                    os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return hrtem_movie(12)


def popouts(frames: np.ndarray) -> np.ndarray:
    """What pop-out gives each frame on its own (it is deterministic whatever the scheduler)."""
    return np.stack([popout(f.astype(np.float32), REAL).volume for f in frames])


class CameraThread(threading.Thread):
    """Plays a movie from a thread; the report (or the error) is kept for the test."""

    def __init__(self, frames, address, pattern, *, fps, faults=Faults(), wait=30.0):
        super().__init__(daemon=True)
        self.camera = Camera(address, pattern=pattern, wait=wait)
        self.frames, self.fps, self.faults = frames, fps, faults
        self.report, self.error = None, None

    def run(self):
        try:
            self.report = play(self.frames, self.camera, fps=self.fps, faults=self.faults,
                               meta={"sample": {"slices": NZ}})
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.error = exc
        finally:
            self.camera.close()


def live_run(frames, out, *, pattern, cfg=REAL, fps=100.0, faults=Faults(), stages=None):
    """A camera thread serving ``frames`` and the live pipeline connected to it, to the end."""
    address = f"tcp://127.0.0.1:{free_port()}"
    cam = CameraThread(frames, address, "pub" if pattern == "sub" else "push", fps=fps,
                       faults=faults)
    cam.start()
    try:
        summary = run_pipeline(ZmqSource(address, pattern=pattern), out, cfg, stages=stages,
                               options=RunOptions(idle_timeout=30.0))
    finally:
        cam.join(30)
    assert cam.error is None and not cam.is_alive()
    return summary, cam.report


@pytest.mark.parametrize("pattern", ["sub", "pull"])
def test_loopback_run_stores_every_frame_with_its_popout_and_refined_volume(
        tmp_path, frames, pattern):
    movie = frames[:10]
    summary, _ = live_run(movie, tmp_path / "run.zarr", pattern=pattern)
    assert summary.reason == "end of series 1"
    g = open_run(tmp_path / "run.zarr")  # consolidated metadata reopens
    np.testing.assert_array_equal(g["frames"][:], movie)
    assert g["frames"].dtype == np.uint16
    np.testing.assert_array_equal(g["frame_id"][:], np.arange(10))
    np.testing.assert_array_equal(g["status"][:], np.full(10, Status.REFINED))
    np.testing.assert_allclose(g["popout"][:], popouts(movie), rtol=1e-6, atol=1e-6)
    volume = g["volume"][:]
    assert volume.shape == (10, NZ, 64, 64) and np.isfinite(volume).all()
    assert (volume.max(axis=(1, 2, 3)) > 0).all()  # material found in every frame
    assert np.isfinite(g["loss"][:]).all()
    assert g.attrs["stream3d"]["counters"] == {"received": 10, "malformed": 0, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    # Timestamps are the camera's (1/100 s apart): the OME time scale is measured from them.
    assert scale_of(g.attrs["ome"]) == pytest.approx((0.01, 40.0, 1.0, 1.0), rel=1e-4)
    assert read_segments(g)[0]["meta"]["sample"]["slices"] == NZ
    plain = zarr.open_group(tmp_path / "run.zarr", mode="r", use_consolidated=False)
    assert plain["volume"].shape == (10, NZ, 64, 64)


def test_every_malformed_kind_is_counted_once_and_the_run_goes_on(tmp_path, frames):
    movie = frames[:10]
    summary, report = live_run(movie, tmp_path / "run.zarr", pattern="pull",
                               faults=Faults(corrupt=tuple(Kind)))
    assert sum(report.corrupted.values()) == len(Kind) == 9
    assert summary.malformed_kinds == {k.value: 1 for k in Kind}
    g = open_run(tmp_path / "run.zarr")
    assert g.attrs["stream3d"]["counters"] == {"received": 10, "malformed": 9, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    np.testing.assert_array_equal(g["frames"][:], movie)
    assert (g["status"][:] == Status.REFINED).all() and np.isfinite(g["volume"][:]).all()


def test_gaps_duplicates_and_a_series_restart_are_counted(tmp_path, frames):
    faults = Faults(drop=frozenset({3, 4, 11}), duplicate=frozenset({1, 8}), restart_after=6)
    summary, report = live_run(frames, tmp_path / "run.zarr", pattern="sub", faults=faults)
    assert report.series == [1, 2]
    kept = [i for i in range(12) if i not in (3, 4, 11)]
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[kept])
    # Series 1: movie frames 0-5 numbered 0-5; series 2: movie frames 6-11 numbered 0-5.
    np.testing.assert_array_equal(g["frame_id"][:], [0, 1, 2, 5, 0, 1, 2, 3, 4])
    assert [(s["series"], s["first"]) for s in read_segments(g)] == [(1, 0), (2, 4)]
    # 3 and 4 are missing inside series 1; 11 (series 2, frame 5) is the tail, known from `end`.
    assert g.attrs["stream3d"]["counters"] == {"received": 9, "malformed": 0, "gaps": 3,
                                               "duplicates": 2, "skipped": 0, "failed": 0}
    assert (g["status"][:] == Status.REFINED).all()
    assert summary.reason == "end of series 2"


def test_latest_policy_skips_behind_a_fast_camera_and_keeps_every_raw_frame(tmp_path):
    movie = hrtem_movie(40, seed=1)
    cfg = REAL.replace("stream", policy="latest")
    summary, _ = live_run(movie, tmp_path / "run.zarr", pattern="sub", cfg=cfg, fps=400.0)
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], movie)  # every raw frame persisted
    status = g["status"][:]
    assert set(np.unique(status)) == {Status.REFINED, Status.SKIPPED}
    n_skipped = int((status == Status.SKIPPED).sum())
    assert n_skipped >= 10  # 40 frames in 0.1 s; a refinement takes tens of ms at least
    assert status[-1] == Status.REFINED  # the newest frame is always reached
    assert g.attrs["stream3d"]["counters"]["skipped"] == n_skipped == summary.statuses["skipped"]
    volume = g["volume"][:]
    assert np.isnan(volume[status == Status.SKIPPED]).all()
    assert np.isfinite(volume[status == Status.REFINED]).all()


def test_replay_spills_to_the_store_and_keeps_warm_starts_in_order(tmp_path):
    """Stage doubles: volume_t = (popout_t + volume_t-1) / 2 exactly, so any frame mixed up,
    repeated or refined out of order shows; a RAM queue of 2 forces reads from the store."""
    movie = np.random.default_rng(0).poisson(1000, (14, 24, 20)).astype(np.uint16)
    path = write_mrc_movie(tmp_path / "m.mrc", movie, pixel_size=1.0)
    cfg = REAL.replace("stream", queue=2, window=2).replace("popout", patch=16, step=8)
    summary = run_pipeline(FileSource(path, frame_interval=0.1), tmp_path / "run.zarr", cfg,
                           stages=Stages(popout_double, RefinerDouble))
    assert summary.spilled > 0 and summary.statuses["refined"] == 14
    g = open_run(tmp_path / "run.zarr")
    expected, previous = [], None
    for f in movie:
        p = expected_popout(f, NZ)
        previous = p if previous is None else ((p + previous) / 2).astype(np.float32)
        expected.append(previous)
    np.testing.assert_array_equal(g["popout"][:], np.stack([expected_popout(f, NZ) for f in movie]))
    np.testing.assert_allclose(g["volume"][:], np.stack(expected), rtol=1e-6)
    np.testing.assert_allclose(g["loss"][:], movie.reshape(14, -1).mean(1), rtol=1e-6)
    assert scale_of(g.attrs["ome"])[0] == pytest.approx(0.1)


def _stored(path) -> int:
    """Frames committed so far in a store being written (0 while unreadable)."""
    try:
        g = zarr.open_group(path, mode="r", use_consolidated=False)
        return int((g["frame_id"][:] >= 0).sum())
    except Exception:  # noqa: BLE001 - not created yet, or between two writes
        return 0


def _refined(path) -> int:
    """Frames refined so far in a store another process is writing (0 while unreadable)."""
    try:
        g = zarr.open_group(path, mode="r", use_consolidated=False)
        return int((g["status"][:] == Status.REFINED).sum())
    except Exception:  # noqa: BLE001 - not created yet, or between two writes
        return 0


def test_a_replay_killed_with_sigkill_resumes_with_each_frame_exactly_once(tmp_path):
    movie = hrtem_movie(30, seed=2)
    path = write_mrc_movie(tmp_path / "m.mrc", movie, pixel_size=1.0)
    out = tmp_path / "run.zarr"
    sets = [a for s in REAL_SETS + ["refine.iterations=20"] for a in ("--set", s)]
    command = [sys.executable, "-m", "stream3d", "reconstruct", str(path), "--out", str(out),
               "--quiet", *sets]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _refined(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()  # still running: killed mid-run
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    killed = zarr.open_group(out, mode="r", use_consolidated=False)
    done_before = int((killed["status"][:] == Status.REFINED).sum())
    assert 3 <= done_before < 30
    assert killed.metadata.consolidated_metadata is None  # the kill came before the end

    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    g = open_run(out)
    np.testing.assert_array_equal(g["frame_id"][:], np.arange(30))  # each frame exactly once
    np.testing.assert_array_equal(g["frames"][:], movie)
    assert (g["status"][:] == Status.REFINED).all()
    assert np.isfinite(g["volume"][:]).all() and np.isfinite(g["popout"][:]).all()
    assert g.attrs["stream3d"]["counters"]["received"] == 30
    assert "30 refined, 0 skipped, 0 failed, 0 pending" in again.stdout


@pytest.fixture
def dask_cluster():
    """A real `dask scheduler` and two `dask worker` processes on loopback; always killed."""
    with dask_processes(2, env=ENV) as address:
        yield address


def test_pipeline_runs_pop_out_on_an_external_dask_cluster(tmp_path, frames, dask_cluster):
    from distributed import Client

    movie = frames[:10]
    path = write_mrc_movie(tmp_path / "m.mrc", movie, pixel_size=1.0)
    summary = run_pipeline(FileSource(path, frame_interval=0.1), tmp_path / "run.zarr", REAL,
                           options=RunOptions(scheduler=dask_cluster))
    assert summary.statuses["refined"] == 10
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], movie)
    np.testing.assert_allclose(g["popout"][:], popouts(movie), rtol=1e-6, atol=1e-6)
    assert np.isfinite(g["volume"][:]).all()
    with Client(dask_cluster, timeout=30) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    # Every pop-out and every frame's registration (stream.register) ran out there.
    assert len(executed) == 2 and sum(executed.values()) == 20
    # hrtem_movie drifts one pixel (1 Å) per frame along x.
    np.testing.assert_allclose(g["shift"][:], [[0.0, t] for t in range(10)], atol=0.25)


def test_max_frames_stops_receiving_and_reconstructs_what_came(tmp_path, frames):
    address = f"tcp://127.0.0.1:{free_port()}"
    cam = CameraThread(frames, address, "push", fps=200.0, wait=3.0)
    cam.start()
    try:
        summary = run_pipeline(ZmqSource(address, pattern="pull"), tmp_path / "run.zarr", REAL,
                               options=RunOptions(max_frames=5, idle_timeout=30.0))
    finally:
        cam.join(10)  # the camera gives up on its vanished receiver after its own 3 s
    assert not cam.is_alive()
    assert summary.reason == "5 frames received"
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[:5])
    assert (g["status"][:] == Status.REFINED).all()


def test_idle_timeout_stops_a_run_that_receives_nothing(tmp_path):
    t0 = time.monotonic()
    summary = run_pipeline(ZmqSource(f"tcp://127.0.0.1:{free_port()}", pattern="pull", bind=True),
                           tmp_path / "run.zarr", REAL,
                           options=RunOptions(idle_timeout=0.5, reconstruct=False))
    assert summary.reason == "idle for 0.5 s" and summary.stored == 0
    assert time.monotonic() - t0 < 20
    assert open_run(tmp_path / "run.zarr").attrs["stream3d"]["counters"]["received"] == 0


def test_a_vanished_sender_leaves_a_consistent_store(tmp_path, frames):
    """The camera process is killed mid-series (no `end`): the receiver waits until its idle
    timeout, then reconstructs what came and closes the store."""
    path = write_mrc_movie(tmp_path / "m.mrc", np.concatenate([frames] * 4), pixel_size=1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    camera = subprocess.Popen([sys.executable, "-m", "stream3d", "camera", str(path),
                               "--endpoint", address, "--pattern", "push", "--fps", "10",
                               *[a for s in REAL_SETS for a in ("--set", s)]],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = int(address.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and camera.poll() is None:  # a loaded machine starts
        with socket.socket() as probe:                              # python slowly
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)

    def kill_after_three_frames():
        deadline = time.monotonic() + 60
        while _stored(tmp_path / "run.zarr") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        camera.kill()

    killer = threading.Thread(target=kill_after_three_frames, daemon=True)
    killer.start()
    try:
        summary = run_pipeline(ZmqSource(address, pattern="pull"), tmp_path / "run.zarr", REAL,
                               options=RunOptions(idle_timeout=1.5))
    finally:
        camera.kill()
        camera.wait(10)
        killer.join(60)
    n = summary.stored
    assert summary.reason == "idle for 1.5 s" and 1 <= n < 48
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], np.concatenate([frames] * 4)[:n])
    assert (g["status"][:] == Status.REFINED).all()
    assert g.attrs["stream3d"]["counters"] == {"received": n, "malformed": 0, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
