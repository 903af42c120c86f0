#!/usr/bin/env python
"""A dask cluster on one GPU workstation for ``stream3d reconstruct/live --scheduler``.

    python deploy/gpu_workstation.py                 # prints: scheduler: tcp://127.0.0.1:8786
    stream3d reconstruct movie.mrc --out run.zarr --scheduler tcp://127.0.0.1:8786

One worker per CUDA device, each advertising the resource ``GPU=1`` (so a task asking for
``resources={"GPU": 1}`` gets a device of its own, and one at a time):

* with dask-cuda installed and CUDA devices present: dask-cuda's ``LocalCUDACluster`` (it pins
  each worker to its device with CUDA_VISIBLE_DEVICES and sets up the CUDA context);
* otherwise a ``dask scheduler`` process and ``dask worker --resources GPU=1`` processes, each
  pinned to one device by CUDA_VISIBLE_DEVICES when there are devices, else running CPU torch
  (``--workers`` of them; this is what CI runs).

The address is printed (and written to ``--address-file``) once every worker has joined; the
cluster runs until Ctrl-C or SIGTERM, then stops its workers and scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def cuda_devices() -> int:
    """CUDA devices this machine has (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def has_dask_cuda() -> bool:
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        return False
    return True


class ProcessCluster:
    """A scheduler and ``n`` worker processes (``--resources GPU=1`` each), as a user would
    start them by hand with the ``dask`` command line."""

    def __init__(self, *, host: str, port: int, workers: int, threads: int,
                 devices: int, timeout: float) -> None:
        self.procs: list[subprocess.Popen] = []
        self._dir = tempfile.TemporaryDirectory(prefix="stream3d-cluster-")
        file = Path(self._dir.name) / "scheduler.json"
        py = sys.executable
        # The scheduler's and workers' small HTTP servers bind where the cluster does.
        http = f"{host}:0"
        log = Path(self._dir.name) / "scheduler.log"  # INFO chatter; its last line on failure
        with open(log, "wb") as sink:
            self.procs.append(subprocess.Popen(
                [py, "-m", "distributed.cli.dask_scheduler", "--host", host, "--port", str(port),
                 "--scheduler-file", str(file), "--dashboard-address", http],
                stdout=sink, stderr=subprocess.STDOUT))
        self.address = _wait_for_file(file, self.procs[0], timeout, log)
        for i in range(workers):
            env = dict(os.environ)
            if devices:
                env["CUDA_VISIBLE_DEVICES"] = str(i % devices)  # one device per worker
            self.procs.append(subprocess.Popen(
                [py, "-m", "distributed.cli.dask_worker", self.address, "--host", host,
                 "--nthreads", str(threads), "--resources", "GPU=1", "--name", f"gpu-{i}",
                 "--dashboard-address", http], env=env))

    def close(self, timeout: float = 20.0) -> None:
        """SIGTERM to the workers first (they leave the scheduler cleanly), then the scheduler;
        anything still running after ``timeout`` s is killed."""
        for group in (self.procs[1:], self.procs[:1]):
            for p in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for p in group:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._dir.cleanup()


def _wait_for_file(file: Path, proc: subprocess.Popen, timeout: float, log: Path) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise SystemExit(f"gpu_workstation: the dask scheduler exited with code "
                             f"{proc.returncode}: {lines[-1]}")
        try:
            return json.loads(file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gpu_workstation: the dask scheduler did not start within {timeout:.0f} s")


def start(args: argparse.Namespace) -> tuple[str, Any, str]:
    """(address, an object with close(), description)."""
    devices = cuda_devices()
    mode = args.mode
    if mode == "auto":
        mode = "cuda" if devices and has_dask_cuda() else "processes"
    if mode == "cuda":
        if not has_dask_cuda() or not devices:
            print("gpu_workstation: --mode cuda needs dask-cuda (pip install 'stream3d[cuda]') "
                  f"and a CUDA device; this machine has "
                  f"{'dask-cuda' if has_dask_cuda() else 'no dask-cuda'} and {devices} "
                  "device(s): use --mode processes", file=sys.stderr)
            raise SystemExit(2)
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(host=args.host, scheduler_port=args.port,
                                   threads_per_worker=args.threads, resources={"GPU": 1},
                                   dashboard_address=f"{args.host}:0")
        return cluster.scheduler_address, cluster, \
            f"LocalCUDACluster: {len(cluster.workers)} workers, one per CUDA device, GPU=1 each"
    n = args.workers or devices or 1
    cluster = ProcessCluster(host=args.host, port=args.port, workers=n, threads=args.threads,
                             devices=devices, timeout=args.timeout)
    what = f"{devices} CUDA device(s)" if devices else "CPU torch (no CUDA device)"
    return cluster.address, cluster, \
        f"dask scheduler + {n} `dask worker --resources GPU=1` process(es), {what}"


def wait_for_workers(address: str, n: int | None, timeout: float) -> list[dict[str, Any]]:
    """The workers (name, resources) once ``n`` (or at least one) have joined."""
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n or 1, timeout=timeout)
        info = client.scheduler_info(n_workers=-1)["workers"]
        return [{"name": w.get("name"), "resources": w.get("resources")} for w in info.values()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (0.0.0.0 or the LAN address for other machines)")
    p.add_argument("--port", type=int, default=8786, help="scheduler port (0 = any free one)")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes without dask-cuda (0 = one per CUDA device, or 1)")
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--mode", choices=("auto", "cuda", "processes"), default="auto",
                   help="cuda: LocalCUDACluster; processes: dask scheduler/worker processes")
    p.add_argument("--address-file", type=Path, help="also write the address here")
    p.add_argument("--timeout", type=float, default=60.0, help="s to wait for start-up")
    args = p.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    address, cluster, what = start(args)
    try:
        expected = None if args.mode == "cuda" else (args.workers or cuda_devices() or 1)
        workers = wait_for_workers(address, expected, args.timeout)
        print(what, flush=True)
        for w in sorted(workers, key=lambda w: str(w["name"])):
            print(f"  worker {w['name']}: resources {w['resources']}", flush=True)
        if args.address_file:
            args.address_file.write_text(address + "\n")
        print(f"scheduler: {address}", flush=True)
        print(f"  stream3d reconstruct MOVIE --out RUN.zarr --scheduler {address}", flush=True)
        print("Ctrl-C stops the cluster.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close()
    print("cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
