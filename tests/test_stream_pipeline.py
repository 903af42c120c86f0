"""The streaming pipeline end to end: camera emulator over loopback -> ingest -> dask pop-out ->
refinement -> run store. Exact counts, byte-identical raw frames, volumes from their own frame.

Plumbing checks use the exact stage doubles of ``stream_doubles`` (each volume a known
function of its frame and of the previous volume), so frame-to-volume bookkeeping is checked
bit for bit.
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

from stream3d import config as config_mod
from stream3d.movie_io import write_mrc_movie
from stream3d.ome import scale_of
from stream3d.store import Status, open_run
from stream3d.stream import (
    Camera, FileSource, Faults, Kind, RunOptions, Stages, ZmqSource, play, run_pipeline,
)
from stream_doubles import RefinerDouble, expected_popout, popout_double

ROOT = Path(__file__).resolve().parents[1]
NZ = 4
CFG = config_mod.load(None, [f"sample.slices={NZ}", "stream.window=3", "stream.queue=8"])
DOUBLES = Stages(popout=popout_double, refiner=RefinerDouble)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def movie(n=10, shape=(24, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(1000, (n, *shape)).astype(np.uint16)


def expected_volumes(frames: np.ndarray) -> np.ndarray:
    """What RefinerDouble produces frame after frame (warm start = the previous volume)."""
    out, prev = [], None
    for f in frames:
        p = expected_popout(f, NZ)
        prev = p if prev is None else ((p + prev) / 2).astype(np.float32)
        out.append(prev)
    return np.stack(out)


class CameraThread(threading.Thread):
    """Plays a movie from a thread; the report (or the error) is kept for the test."""

    def __init__(self, frames, address, pattern, *, fps=200.0, faults=Faults(), bind=True):
        super().__init__(daemon=True)
        self.camera = Camera(address, pattern=pattern, bind=bind, wait=20.0)
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


def live_run(frames, out, *, pattern="sub", cfg=CFG, stages=DOUBLES, fps=200.0,
             faults=Faults(), options=RunOptions(idle_timeout=20.0)):
    address = f"tcp://127.0.0.1:{free_port()}"
    cam = CameraThread(frames, address, "pub" if pattern == "sub" else "push", fps=fps,
                       faults=faults)
    cam.start()
    source = ZmqSource(address, pattern=pattern, bind=False)
    summary = run_pipeline(source, out, cfg, options=options, stages=stages)
    cam.join(20)
    assert cam.error is None and not cam.is_alive()
    return summary, cam.report


@pytest.mark.parametrize("pattern", ["sub", "pull"])
def test_loopback_run_stores_every_frame_exactly_with_its_volumes(tmp_path, pattern):
    frames = movie()
    summary, _ = live_run(frames, tmp_path / "run.zarr", pattern=pattern)
    assert summary.reason == "end of series 1"
    g = open_run(tmp_path / "run.zarr")  # consolidated metadata reopens
    np.testing.assert_array_equal(g["frames"][:], frames)
    assert g["frames"].dtype == np.uint16
    np.testing.assert_array_equal(g["frame_id"][:], np.arange(10))
    np.testing.assert_array_equal(g["status"][:], np.full(10, Status.REFINED))
    np.testing.assert_array_equal(g["popout"][:], np.stack([expected_popout(f, NZ) for f in frames]))
    np.testing.assert_allclose(g["volume"][:], expected_volumes(frames), rtol=1e-6)
    np.testing.assert_allclose(g["loss"][:], frames.reshape(10, -1).mean(1), rtol=1e-6)
    assert g.attrs["stream3d"]["counters"] == {"received": 10, "malformed": 0, "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    # Timestamps are the camera's (1/200 s apart): the OME time scale is measured from them.
    assert scale_of(g.attrs["ome"])[0] == pytest.approx(1 / 200, rel=1e-4)
    assert g.attrs["stream3d"]["series"][0]["meta"]["sample"]["slices"] == NZ
    assert zarr.open_group(tmp_path / "run.zarr", mode="r", use_consolidated=False)["volume"].shape \
        == (10, NZ, 24, 20)


def test_every_malformed_kind_is_counted_once_and_the_run_goes_on(tmp_path):
    frames = movie()
    summary, report = live_run(frames, tmp_path / "run.zarr", pattern="pull",
                               faults=Faults(corrupt=tuple(Kind)))
    assert sum(report.corrupted.values()) == len(Kind)
    assert summary.malformed_kinds == {k.value: 1 for k in Kind}
    g = open_run(tmp_path / "run.zarr")
    assert g.attrs["stream3d"]["counters"] == {"received": 10, "malformed": len(Kind), "gaps": 0,
                                               "duplicates": 0, "skipped": 0, "failed": 0}
    np.testing.assert_array_equal(g["frames"][:], frames)
    assert (g["status"][:] == Status.REFINED).all()


def test_gaps_duplicates_and_a_series_restart_are_counted(tmp_path):
    frames = movie(12)
    faults = Faults(drop=frozenset({3, 4, 11}), duplicate=frozenset({1, 8}), restart_after=6)
    summary, report = live_run(frames, tmp_path / "run.zarr", pattern="pull", faults=faults)
    assert report.series == [1, 2]
    kept = [i for i in range(12) if i not in (3, 4, 11)]
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames[kept])
    # Series 1: movie frames 0-5 numbered 0-5; series 2: movie frames 6-11 numbered 0-5.
    np.testing.assert_array_equal(g["frame_id"][:], [0, 1, 2, 5, 0, 1, 2, 3, 4])
    assert [(s["series"], s["first"]) for s in g.attrs["stream3d"]["series"]] == [(1, 0), (2, 4)]
    # 3, 4 missing inside series 1; 11 (series 2, frame 5) is the tail, counted from `end`.
    assert g.attrs["stream3d"]["counters"] == {"received": 9, "malformed": 0, "gaps": 3,
                                               "duplicates": 2, "skipped": 0, "failed": 0}
    assert summary.reason == "end of series 2"


class SlowRefiner(RefinerDouble):
    delay = 0.15


def test_latest_policy_skips_behind_a_fast_camera_and_keeps_every_raw_frame(tmp_path):
    frames = movie(30)
    cfg = CFG.replace("stream", policy="latest")
    summary, _ = live_run(frames, tmp_path / "run.zarr", pattern="sub", cfg=cfg, fps=100.0,
                          stages=Stages(popout_double, SlowRefiner))
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["frames"][:], frames)  # every raw frame persisted
    status = g["status"][:]
    assert set(np.unique(status)) <= {Status.REFINED, Status.SKIPPED}
    n_skipped = int((status == Status.SKIPPED).sum())
    assert n_skipped >= 10  # 30 frames in 0.3 s, 0.15 s per refinement
    assert status[-1] == Status.REFINED  # the newest frame is always reached
    assert g.attrs["stream3d"]["counters"]["skipped"] == n_skipped
    assert np.isnan(g["volume"][:][status == Status.SKIPPED]).all()
    assert not np.isnan(g["volume"][:][status == Status.REFINED]).any()


def test_replay_spills_to_the_store_and_resumes_without_repeating(tmp_path):
    frames = movie(14)
    path = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    cfg = CFG.replace("stream", queue=2, window=2)
    out = tmp_path / "run.zarr"
    first = run_pipeline(FileSource(path, frame_interval=0.1), out, cfg,
                         options=RunOptions(max_frames=9), stages=Stages(popout_double, SlowRefiner))
    assert first.stored == 9 and first.statuses["refined"] == 9
    assert first.spilled > 0  # more frames than the RAM queue: read back from the store
    again = run_pipeline(FileSource(path, frame_interval=0.1), out, cfg, stages=DOUBLES)
    assert again.session_received == 5 and again.stored == 14
    g = open_run(out)
    np.testing.assert_array_equal(g["frames"][:], frames)
    np.testing.assert_array_equal(g["frame_id"][:], np.arange(14))
    np.testing.assert_array_equal(g["popout"][:], np.stack([expected_popout(f, NZ) for f in frames]))
    assert (g["status"][:] == Status.REFINED).all()
    assert g.attrs["stream3d"]["counters"]["received"] == 14
    assert scale_of(g.attrs["ome"])[0] == pytest.approx(0.1)


def _refined(path) -> int:
    """Frames refined so far in a store another process is writing (0 while unreadable)."""
    try:
        g = zarr.open_group(path, mode="r", use_consolidated=False)
        return int((g["status"][:] == Status.REFINED).sum())
    except Exception:  # noqa: BLE001 - not created yet, or between two writes
        return 0


def test_a_replay_killed_with_sigkill_resumes_with_each_frame_exactly_once(tmp_path):
    frames = movie(12)
    path = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    out = tmp_path / "run.zarr"
    script = Path(__file__).with_name("stream_replay_doubles.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(out), "0.25"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while _refined(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    killed = zarr.open_group(out, mode="r", use_consolidated=False)
    done_before = int((killed["status"][:] == Status.REFINED).sum())
    assert 3 <= done_before < 12  # killed mid-run
    assert killed.metadata.consolidated_metadata is None  # the kill came before the end

    summary = run_pipeline(FileSource(path, frame_interval=0.1), out, CFG, stages=DOUBLES)
    assert summary.session_reconstructed == 12 - done_before
    g = open_run(out)
    np.testing.assert_array_equal(g["frame_id"][:], np.arange(12))  # each frame exactly once
    np.testing.assert_array_equal(g["frames"][:], frames)
    np.testing.assert_array_equal(g["popout"][:], np.stack([expected_popout(f, NZ) for f in frames]))
    assert (g["status"][:] == Status.REFINED).all()
    assert not np.isnan(g["volume"][:]).any()
    assert g.attrs["stream3d"]["counters"]["received"] == 12


@pytest.fixture
def dask_cluster():
    """A real `dask scheduler` and two `dask worker` processes on loopback; always killed."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], **quiet))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)


def test_pipeline_runs_pop_out_on_an_external_dask_cluster(tmp_path, dask_cluster):
    from distributed import Client

    frames = movie(10)
    path = write_mrc_movie(tmp_path / "m.mrc", frames, pixel_size=1.0)
    summary = run_pipeline(FileSource(path, frame_interval=0.1), tmp_path / "run.zarr", CFG,
                           options=RunOptions(scheduler=dask_cluster), stages=DOUBLES)
    assert summary.statuses["refined"] == 10
    g = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(g["popout"][:], np.stack([expected_popout(f, NZ) for f in frames]))
    np.testing.assert_allclose(g["volume"][:], expected_volumes(frames), rtol=1e-6)
    with Client(dask_cluster, timeout=30) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and sum(executed.values()) == 10  # every pop-out ran out there
