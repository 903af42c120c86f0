"""Scale: one frame's time and peak memory against its size, and tiles spread over 1 or 2
GPU workers of a dask cluster.

    python benchmarks/scale.py            # 512, 1024, 2048 px; workers on 2048 (tens of minutes)
    python benchmarks/scale.py --quick    # 256, 768 px; workers on 768 (several minutes)

Every size runs in a fresh subprocess, so its peak RSS (ru_maxrss) is that frame's alone: it
loads the frame (simulated beforehand in another process), runs pop-out and the Refiner (the
default config on the CPU, one torch thread) and reports times, tiles and the peak. The
specimen is the 512-px three-disc field repeated, so every size holds material at the same
density. Then a real `dask scheduler` and 1 or 2 `dask worker --nthreads 1 --resources GPU=1`
processes refine the largest frame's tiles (the speed-up, with WORKER_ITERATIONS iterations
so that it fits an hour on 2 cores), and on 2 workers the second-largest frame's warm state
is sent with each task or kept on the worker (affinity): frame 2's time, with one iteration
so that the warm state's transfer is a visible part of it. Ratios are taken in one run.
Targets (issue 14): 2048 px peak RSS <= 3 GB, time <= 20 x the 512 px frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
BASE = 512  # px, the specimen field repeated over larger frames
WORKER_ITERATIONS = 3  # refine.iterations of the 1-vs-2-worker runs (the rest: the default)


def _config(iterations: int | None = None):
    from stream3d.config import Config

    config = Config().replace("refine", device="cpu")
    return config if iterations is None else config.replace("refine", iterations=iterations)


# ----------------------------------------------------------------------------- children
def simulate(size: int, out: str) -> dict:
    """Simulate one frame (counts) of ``size`` px and save it to ``out`` (.npy)."""
    import numpy as np

    from stream3d.simulate import simulate_frame
    from stream3d.specimen import three_discs

    config = _config()
    s = config.sample
    base = min(size, BASE)
    occupancy = three_discs((s.slices, base, base), s.sampling)
    reps = -(-size // base)
    occupancy = np.tile(occupancy, (1, reps, reps))[:, :size, :size]
    frame, _ = simulate_frame(occupancy, config, seed=0)
    np.save(out, frame)
    return {"size": size}


def measure(frame_path: str, popout_out: str) -> dict:
    """Pop-out and refinement of one frame in this (fresh) process: times, tiles, peak RSS."""
    import numpy as np
    import torch

    from stream3d.popout import popout
    from stream3d.refine import Refiner
    from stream3d.refine.tiles import frame_plan

    torch.set_num_threads(1)
    config = _config()
    frame = np.load(frame_path)
    clock = time.perf_counter()
    pop = popout(frame, config)
    t_pop = time.perf_counter() - clock
    clock = time.perf_counter()
    result = Refiner(config).refine(frame, pop)
    t_refine = time.perf_counter() - clock
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kiB -> GiB
    if popout_out:
        np.save(popout_out, pop.volume)
    return {"size": int(frame.shape[0]), "tiles": len(frame_plan(frame.shape, config)),
            "popout_s": t_pop, "refine_s": t_refine, "total_s": t_pop + t_refine,
            "rss_gb": peak, "status": result.status}


def on_cluster(address: str, workers: int, frame_path: str, popout_path: str, frames: int,
               iterations: int, affinity: bool) -> dict:
    """Refine the frame (``frames`` times, warm after the first) with its tiles on the cluster."""
    import numpy as np
    from distributed import Client

    from stream3d.popout import PopoutResult
    from stream3d.refine import Refiner
    from stream3d.refine.distributed import DaskTiles

    config = _config(iterations or None)
    frame, volume = np.load(frame_path), np.load(popout_path)
    flat = np.zeros(frame.shape, np.float32)
    pop = PopoutResult(volume=volume, height=flat, thickness=flat, confidence=flat, message="")
    times = []
    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)
        client.run(_load_refiner)  # every worker warmed up before the clock starts
        refiner = Refiner(config, tiles=DaskTiles(client, affinity=affinity))
        for _ in range(frames):
            clock = time.perf_counter()
            result = refiner.refine(frame, pop)
            times.append(time.perf_counter() - clock)
    return {"seconds": times, "warm": bool(result.warm)}


def _load_refiner() -> None:
    """One tiny refinement: imports and first-call set-up of torch happen before timing."""
    import numpy as np

    from stream3d.refine.refiner import TileJob, refine_tile

    config = _config(1)
    volume = np.zeros((config.sample.slices, 64, 64), np.float32)
    volume[10:14, 16:48, 16:48] = config.sample.potential
    frame = np.full((64, 64), config.detector.dose * config.sample.pixel_size**2, np.float32)
    refine_tile(TileJob(frame, volume), config)


CHILDREN = {"simulate": simulate, "measure": measure, "cluster": on_cluster}


# ----------------------------------------------------------------------------- parent
def _child(name: str, *args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, *map(str, args)],
                         env=ENV, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_run(workers: int, *args) -> dict:
    """Start a scheduler and ``workers`` GPU workers, run the cluster child, kill them all."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    quiet = dict(env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                 "--resources", "GPU=1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                **quiet))
        return _child("cluster", address, workers, *args)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 and 768 px, workers on 768")
    parser.add_argument("--sizes", type=int, nargs="+", help="frame sizes (px), smallest first")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *rest = args.child
        types = {"simulate": (int, str), "measure": (str, str),
                 "cluster": (str, int, str, str, int, int, lambda v: v == "True")}[name]
        print(json.dumps(CHILDREN[name](*(t(v) for t, v in zip(types, rest)))))
        return
    sizes = args.sizes or ((256, 768) if args.quick else (512, 1024, 2048))
    if len(sizes) < 2:
        parser.error("give at least two --sizes")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in sizes:
            frame = f"{tmp}/frame{size}.npy"
            _child("simulate", size, frame)
            keep = f"{tmp}/popout{size}.npy" if size != sizes[0] else ""
            rows.append(_child("measure", frame, keep))
            print(f"  {size} px: {rows[-1]}", flush=True)
        # On 2 shared cores a 2048 px frame's 15 iterations take half an hour per run: the
        # speed-up is measured with WORKER_ITERATIONS, the warm state on the 1024 px frame.
        big, mid = sizes[-1], sizes[1]
        data = f"{tmp}/frame{big}.npy", f"{tmp}/popout{big}.npy"
        one = _cluster_run(1, *data, 1, WORKER_ITERATIONS, False)["seconds"][0]
        two = _cluster_run(2, *data, 1, WORKER_ITERATIONS, False)["seconds"][0]
        print(f"  workers: 1 -> {one:.1f} s, 2 -> {two:.1f} s", flush=True)
        data = f"{tmp}/frame{mid}.npy", f"{tmp}/popout{mid}.npy"
        send = _cluster_run(2, *data, 2, 1, False)
        held = _cluster_run(2, *data, 2, 1, True)
    _report(rows, big, mid, one, two, send, held)


def _report(rows: list[dict], big: int, mid: int, one: float, two: float, send: dict,
            held: dict) -> None:
    print("| frame (px) | tiles | pop-out (s) | refine (s) | frame (s) | s / Mpx "
          "| peak RSS (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        print(f"| {r['size']} x {r['size']} | {r['tiles']} | {r['popout_s']:.1f} | "
              f"{r['refine_s']:.1f} | {r['total_s']:.1f} | {r['total_s'] / mpx:.1f} | "
              f"{r['rss_gb']:.2f} |")
    first, last = rows[0], rows[-1]
    pixels = (last["size"] / first["size"]) ** 2
    print(f"\n{last['size']} vs {first['size']} px: {pixels:.0f}x the pixels, "
          f"{last['total_s'] / first['total_s']:.1f}x the frame time "
          f"({last['refine_s'] / first['refine_s']:.1f}x the refinement)")
    print(f"refinement of the {big} px frame's tiles on dask GPU workers ({WORKER_ITERATIONS} "
          f"iterations): 1 worker {one:.1f} s, 2 workers {two:.1f} s: speed-up {one / two:.2f}x")
    print(f"warm state of the {mid} px frame's second frame (2 workers, 1 iteration): sent "
          f"with each task "
          f"{send['seconds'][1]:.1f} s, kept on the worker (affinity) {held['seconds'][1]:.1f} s "
          f"(warm: {send['warm']}, {held['warm']})")


if __name__ == "__main__":
    main()
