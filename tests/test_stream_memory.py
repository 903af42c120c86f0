"""Flat memory with compute: what dask keeps per pop-out task must not grow with the frames.

Each check counts a dask structure that grew by one or more records per task before the fix
(benchmarks/soak.py measures the RSS itself over 100,000 frames).
"""

from __future__ import annotations

import gc
import time

import numpy as np
from dask.utils import key_split

from stream3d.io.movies import write_mrc_movie
from stream3d.store import open_run
from stream3d.stream import FileSource, Stages, run_pipeline
from stream3d.stream.compute import POPOUT_KEYS
from stream3d.stream.cluster import dask_client
from stream_helpers import REAL, RefinerDouble, expected_popout, popout_double

WARM, TASKS = 20, 120


class TrackedFrame(np.ndarray):
    """A frame the garbage collector sees (plain ndarrays are not gc-tracked), so a test can
    count the copies dask still holds."""


def _popout_like(frame: np.ndarray) -> float:
    return float(frame.sum())


def _live_frames() -> int:
    gc.collect()
    return sum(type(o) is TrackedFrame for o in gc.get_objects())


def _per_task_records(client) -> dict[str, int]:
    scheduler = client.cluster.scheduler
    worker = next(iter(client.cluster.workers.values()))
    spans = scheduler.extensions.get("spans")
    return {"spans": len(spans.spans) if spans else 0,
            "worker metrics": len(worker.digests_total)}


def test_the_embedded_cluster_keeps_no_record_or_frame_per_task():
    """One pop-out at a time, as the reconstructor submits them: before the fix each task left
    a span (and its task group) on the scheduler, worker metrics keyed by that span, and its
    frame in the comms' logs of recent messages."""
    with dask_client(None, threads=1) as client:
        def run(n: int, start: int) -> None:
            for i in range(start, start + n):
                frame = np.full((16, 16), i, np.float32).view(TrackedFrame)
                future = client.submit(_popout_like, frame, key=f"p-{i % 8}")
                assert future.result() == 256.0 * i
                del future, frame
        run(WARM, 0)
        before = _per_task_records(client)
        run(TASKS, WARM)
        after = _per_task_records(client)
        deadline = time.monotonic() + 5.0  # the last task's release reaches the worker a bit later
        while (live := _live_frames()) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert after == before, (before, after)
    assert live == 0, f"{live} of {WARM + TASKS} frames still held by dask"


def test_pop_out_task_keys_cycle_so_dask_key_caches_stay_bounded(tmp_path):
    """dask caches key_split() for 100,000 distinct keys: a key per frame grew it by one entry
    per frame. A replay of more frames than POPOUT_KEYS adds at most POPOUT_KEYS entries."""
    n = POPOUT_KEYS + 36
    movie = np.random.default_rng(0).poisson(1000, (n, 24, 20)).astype(np.uint16)
    path = write_mrc_movie(tmp_path / "m.mrc", movie, pixel_size=1.0)
    cfg = REAL.replace("stream", window=3).replace("popout", patch=16, step=8)
    key_split.cache_clear()
    summary = run_pipeline(FileSource(path, frame_interval=0.1), tmp_path / "run.zarr", cfg,
                           stages=Stages(popout_double, RefinerDouble))
    assert summary.statuses["refined"] == n
    # A reused key never hands back an earlier frame's result: each pop-out is its own frame's.
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr")["popout"][:], np.stack(
        [expected_popout(f, cfg.sample.slices) for f in movie]))
    assert key_split.cache_info().currsize <= POPOUT_KEYS + 16  # + dask's own few keys
