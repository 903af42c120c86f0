"""Pop-out speed per frame, speed-up with 2 dask workers, and depth errors against the truth.

    python benchmarks/popout.py [--size 512] [--frames 8] [--repeat 5]

Simulates three specimens (three discs at three heights, a tilted slab, the grown dendrite) at
the default config, then reports:
  1. time per frame on the threaded scheduler (target <= 0.5 s for 512 x 512 on 2 cores) and
     on one thread;
  2. throughput of a dask LocalCluster with 2 single-threaded workers vs 1 (frames in
     parallel, the streaming pipeline's pattern), as a ratio measured in one run;
  3. the depth error table: mean |height error| in material, worst per-region error, mask IoU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best_time  # noqa: E402

from stream3d.config import Config  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.popout.scoring import score  # noqa: E402
from stream3d.simulate import simulate_frame  # noqa: E402
from stream3d.specimen import three_discs, tilted_slab  # noqa: E402
from stream3d.specimen.catalog import dendrite  # noqa: E402

CPU = torch.device("cpu")  # pop-out is numpy on the CPU


def specimens(config: Config, size: int) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (occupancy, region kind) on a size x size field."""
    s = config.sample
    shape = (s.slices, size, size)
    grown = dendrite(config.replace("simulate", ny=size, nx=size))
    return {
        "three discs (128/320/512 Å)": (three_discs(shape, s.sampling), "pieces"),
        "tilted slab (100->540 Å)": (tilted_slab(shape, s.sampling, height_left=100.0,
                                                 height_right=540.0, thickness=80.0), "strips"),
        "dendrite (frame 9)": (grown.occupancy(9), "tiles"),
    }


def cluster_times(frames: list[np.ndarray], config: Config, rounds: int = 4) -> tuple[float, float]:
    """Best wall times for LocalClusters of 1 and of 2 single-threaded workers to pop out all
    frames. Both clusters live side by side and take turns, so load from other processes
    on a shared machine hits both alike."""
    from distributed import Client, LocalCluster, wait

    logging.getLogger("distributed").setLevel(logging.ERROR)  # no start/stop chatter
    clusters = [LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                             dashboard_address=":0", silence_logs=logging.ERROR) for n in (1, 2)]
    clients = [Client(c) for c in clusters]
    try:
        scattered = [c.scatter(frames, broadcast=True) for c in clients]
        for c, futures in zip(clients, scattered):  # warm-up: imports, cached models
            wait(c.map(popout, futures, config=config, pure=False))
        best = [float("inf"), float("inf")]
        for _ in range(rounds):
            for i, (c, futures) in enumerate(zip(clients, scattered)):
                t0 = time.perf_counter()
                wait(c.map(popout, futures, config=config, pure=False))
                best[i] = min(best[i], time.perf_counter() - t0)
        return best[0], best[1]
    finally:
        for c in clients:
            c.close()
        for c in clusters:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="frame edge, px")
    parser.add_argument("--frames", type=int, default=12, help="frames for the cluster speed-up")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = Config()
    s = config.sample

    print(f"simulating {args.size}x{args.size} frames ...", flush=True)
    cases = {name: (occ, kind, simulate_frame(occ, config, seed=i + 1)[0])
             for i, (name, (occ, kind)) in enumerate(specimens(config, args.size).items())}
    frames = [frame for _, _, frame in cases.values()]

    frame = frames[-1]
    t_threads = best_time(lambda: popout(frame, config), device=CPU, repeat=args.repeat)
    one = config.replace("popout", threads=1)
    t_one = best_time(lambda: popout(frame, one), device=CPU, repeat=args.repeat)
    print(f"\npop-out of one {args.size}x{args.size} frame (dendrite), best of {args.repeat}")
    print(f"{'scheduler':<40}{'time (s)':>10}{'target':>10}")
    print(f"{'threaded (default, all cores)':<40}{t_threads:>10.3f}{'<= 0.5':>10}")
    print(f"{'threaded, popout.threads = 1':<40}{t_one:>10.3f}")

    batch = [frames[i % len(frames)] for i in range(args.frames)]
    t1, t2 = cluster_times(batch, config)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{args.frames} frames on a dask LocalCluster of single-threaded workers "
          f"(load average {load} on {os.cpu_count()} cores: other work skews the ratio)")
    print(f"{'workers':<12}{'time (s)':>10}{'s/frame':>10}{'speed-up':>10}")
    print(f"{1:<12}{t1:>10.2f}{t1 / args.frames:>10.3f}{1.0:>9.2f}x")
    print(f"{2:<12}{t2:>10.2f}{t2 / args.frames:>10.3f}{t1 / t2:>9.2f}x")

    print(f"\ndepth errors against the truth ({args.size}x{args.size}, dose "
          f"{config.detector.dose:g} e/Å², defocus {config.microscope.defocus:g} Å)")
    print(f"{'specimen':<30}{'mean |dh| (Å)':>15}{'worst region (Å)':>18}{'regions':>9}"
          f"{'IoU':>7}{'mean |dt| (Å)':>15}{'confidence':>12}")
    for name, (occ, kind, frame) in cases.items():
        sc = score(popout(frame, config), occ, s.slice_thickness, kind)
        print(f"{name:<30}{sc.height_mae:>15.1f}{sc.worst_region:>18.1f}{len(sc.region_errors):>9}"
              f"{sc.iou:>7.3f}{sc.thickness_mae:>15.1f}{sc.confidence:>12.2f}")


if __name__ == "__main__":
    main()
