"""Shared by the streaming tests: small real configs and movies, free ports, stage doubles.

The doubles stand in for pop-out and refinement where a test checks bookkeeping bit for bit:
each volume is an exact function of its own frame (and, for refinement, of the previous
volume: the warm start), so frame t's volumes must come from frame t and frame t-1's result.
Everything else runs the real stages on :data:`REAL_SETS` (64 x 64 x 8, a few iterations).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stream3d import config as config_mod
from stream3d.simulate import simulate_frame
from stream3d.specimen import three_discs

#: A small but complete config for the real stages: 64 x 64 px frames, 8 slices of 40 Å,
#: 32 px pop-out patches, a short refinement (3 iterations) on the CPU.
REAL_SETS = [
    "sample.slices=8", "sample.slice_thickness=40", "popout.patch=32", "popout.step=8",
    "refine.device=cpu", "refine.iterations=3", "stream.window=3", "stream.queue=8",
]
REAL = config_mod.load(None, REAL_SETS)


def hrtem_movie(n: int, config: config_mod.Config = REAL, size: int = 64, seed: int = 0
                ) -> np.ndarray:
    """``n`` uint16 HRTEM frames (counts) of three discs at three depths drifting one pixel
    per frame along x, each with its own Poisson noise (one multislice simulation)."""
    s = config.sample
    occupancy = three_discs((s.slices, size, size), s.sampling)
    counts, _ = simulate_frame(occupancy, config, seed=seed, noise=False)
    rng = np.random.default_rng(seed)
    return np.stack([rng.poisson(np.roll(counts, i, axis=1)) for i in range(n)]).astype(np.uint16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PopoutDouble:
    volume: np.ndarray
    height: np.ndarray
    thickness: np.ndarray
    confidence: np.ndarray
    message: str = "double"


def popout_double(frame: np.ndarray, config, *, client=None) -> PopoutDouble:
    nz = config.sample.slices
    plane = (np.asarray(frame, np.float32) / 1000.0).astype(np.float32)
    volume = np.stack([plane * (z + 1) for z in range(nz)]).astype(np.float32)
    zeros = np.zeros(frame.shape, np.float32)
    return PopoutDouble(volume, zeros, zeros, zeros)


def expected_popout(frame: np.ndarray, nz: int) -> np.ndarray:
    plane = (np.asarray(frame, np.float32) / 1000.0).astype(np.float32)
    return np.stack([plane * (z + 1) for z in range(nz)]).astype(np.float32)


@dataclass
class RefineDouble:
    volume: np.ndarray
    loss: float
    loss_history: list
    iterations: int
    seconds: float
    status: str
    warm: bool


class RefinerDouble:
    """volume_t = (popout_t + volume_{t-1}) / 2, loss = mean(frame); ``delay`` s per frame."""

    delay = 0.0

    def __init__(self, config, device=None) -> None:
        self.previous = None

    def refine(self, frame, popout) -> RefineDouble:
        time.sleep(self.delay)
        warm = self.previous is not None
        volume = popout.volume if not warm else ((popout.volume + self.previous) / 2)
        self.previous = volume.astype(np.float32)
        return RefineDouble(self.previous, float(np.mean(frame)), [], 1, self.delay, "converged",
                            warm)


@contextlib.contextmanager
def dask_processes(workers: int = 2, *, resources: str | None = None,
                   env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `dask scheduler` and ``workers`` `dask worker` processes (one thread each,
    ``--resources resources`` if given) on loopback; yields the scheduler address once the
    workers have joined, and always kills them."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    extra = ["--resources", resources] if resources else []
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", *extra,
                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)
