"""Peak memory of replaying a movie larger than it: ``reconstruct MOVIE --record-only``.

    python benchmarks/replay_memory.py [--gib 4] [--size 1024] [--format mrc|tiff] [--dir TMP]

Writes a ``--gib`` GiB uint16 movie of ``--size``² frames into a temporary folder (after
checking with the file system that movie + run store fit, with room to spare), replays it with
``stream3d reconstruct --record-only`` in a child process, and reports the child's peak
resident memory (ru_maxrss) next to the movie's size. Target: peak RSS < 1 GiB for 4 GiB.
Everything written is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_movie(path: Path, frames: int, size: int, fmt: str) -> None:
    """``frames`` uint16 frames cycling through 16 distinct Poisson frames (written frame by
    frame: this process never holds the movie either)."""
    rng = np.random.default_rng(0)
    distinct = rng.poisson(100, (16, size, size)).astype(np.uint16)
    if fmt == "mrc":
        import mrcfile

        with mrcfile.new(path, overwrite=True) as mrc:  # header of a (frames, y, x) stack
            mrc.set_data(np.zeros((1, size, size), np.uint16))
            mrc.header.nz = frames
            mrc.header.mz = frames
            mrc.set_image_stack()
            mrc.voxel_size = 1.0
            mrc.update_header_stats()
            header = mrc.header.tobytes()
        with open(path, "wb") as f:
            f.write(header)
            for i in range(frames):
                f.write(distinct[i % 16].tobytes())
    else:
        import tifffile

        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            for i in range(frames):
                tif.write(distinct[i % 16], photometric="minisblack", contiguous=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--format", choices=("mrc", "tiff"), default="mrc")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()

    frame_bytes = args.size * args.size * 2
    frames = int(args.gib * 2**30 // frame_bytes)
    need = 2.2 * frames * frame_bytes  # the movie, the run store (<= its size), a margin
    free = shutil.disk_usage(args.dir).free
    if free < need:
        raise SystemExit(f"{args.dir} has {free / 2**30:.1f} GiB free; the measurement needs "
                         f"{need / 2**30:.1f} GiB")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        movie = tmp / f"big.{args.format}"
        t0 = time.perf_counter()
        write_movie(movie, frames, args.size, args.format)
        written = time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                            os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "stream3d", "reconstruct", str(movie),
                               "--out", str(tmp / "run.zarr"), "--record-only", "--quiet"],
                              env=env, capture_output=True, text=True)
        replay_s = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if done.returncode != 0:
            raise SystemExit(f"replay failed: {done.stderr.strip()}")
        import zarr

        stored = zarr.open_group(tmp / "run.zarr", mode="r")["frames"].shape[0]
        movie_gib = movie.stat().st_size / 2**30
    peak_gib = peak_kib / 2**20
    print(f"movie            {movie_gib:.2f} GiB {args.format.upper()}, {frames} frames of "
          f"{args.size}² uint16 (written in {written:.0f} s)")
    print(f"replayed         {stored} frames stored raw in {replay_s:.0f} s "
          f"({stored / replay_s:.0f} frames/s)")
    print(f"peak RSS         {peak_gib:.3f} GiB  ({peak_gib / movie_gib:.3f} x the movie; "
          f"target < 1 GiB: {'met' if peak_gib < 1 else 'NOT met'})")
    if stored != frames:
        raise SystemExit(f"only {stored} of {frames} frames were stored")


if __name__ == "__main__":
    main()
