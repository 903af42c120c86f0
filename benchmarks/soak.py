"""Soak: a long live run of small frames over ZeroMQ; prints frames/s and the receiver's RSS
slope (kB per 1,000 frames, least squares over the samples after warm-up). Target: < 1 kB
per 1,000 frames, i.e. flat memory.

    python benchmarks/soak.py --frames 100000                 # both modes, one after the other
    python benchmarks/soak.py --frames 100000 --mode record-only    # raw frames only
    python benchmarks/soak.py --frames 20000 --mode compute   # policy latest, real stages

A sender process PUSHes ``--frames`` frames of ``--size`` x ``--size`` uint16 in one series
(it waits when the receiver falls behind); the receiver is this process (the live pipeline),
sampled every ``--every`` frames. With --compute, pop-out and refinement run on CPU with
stream.policy = latest (skipping whatever they cannot keep up with, as a microscope run does).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPUTE_SETS = ["sample.slices=4", "sample.slice_thickness=40", "popout.patch=16",
                "popout.step=8", "refine.device=cpu", "refine.iterations=2",
                "stream.policy=latest",
                "stream.window=2", "stream.torch_threads=1", "popout.threads=1"]


def _send(address: str, frames: int, size: int) -> None:
    """The detector: one series of ``frames`` frames, as fast as the receiver takes them."""
    import zmq

    from stream3d.stream.protocol import encode_end, encode_frame, encode_start

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100)
    sock.setsockopt(zmq.LINGER, 60_000)
    sock.connect(address)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 4000, (64, size, size)).astype(np.uint16)
    sock.send_multipart(encode_start(1))
    t0 = time.time()
    for n in range(frames):
        sock.send_multipart(encode_frame(1, n, t0 + n * 1e-3, pool[n % 64]))
    sock.send_multipart(encode_end(1, frames))
    sock.close()
    ctx.term()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024.0


def soak(out: Path, *, frames: int, size: int, compute: bool, every: int,
         warmup: float) -> dict:
    from stream3d import config as config_mod
    from stream3d.stream import RunOptions, ZmqSource
    from stream3d.stream.pipeline import Pipeline

    cfg = config_mod.load(None, ["sample.slices=2"] + (COMPUTE_SETS if compute else []))
    address = f"tcp://127.0.0.1:{free_port()}"
    pipeline = Pipeline(ZmqSource(address, pattern="pull", bind=True, hwm=100), out, cfg,
                        options=RunOptions(reconstruct=compute, idle_timeout=60))
    samples: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        nxt = 0
        while not done.wait(0.05):
            writer = pipeline._writer
            stored = writer.persisted if writer is not None else 0
            if stored >= nxt:
                samples.append((stored, _rss_kb()))
                nxt = stored + every

    sender = mp.get_context("spawn").Process(target=_send, args=(address, frames, size))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sender.start()
    t0 = time.monotonic()
    summary = pipeline.run()
    seconds = time.monotonic() - t0
    done.set()
    sampler.join()
    sender.join(60)
    xs = np.array([s for s, _ in samples], float)
    ys = np.array([r for _, r in samples], float)
    keep = xs >= warmup * frames
    slope = float(np.polyfit(xs[keep], ys[keep], 1)[0] * 1000.0) if keep.sum() >= 3 else float("nan")
    return {"mode": "compute (latest)" if compute else "record-only", "frames": frames,
            "stored": summary.stored, "size": size, "seconds": seconds,
            "frames_per_s": summary.ingest_fps, "refined": summary.statuses["refined"],
            "skipped": summary.statuses["skipped"], "rss_start_mb": ys[keep][0] / 1024,
            "rss_end_mb": ys[-1] / 1024, "slope_kb_per_1000": slope, "samples": int(keep.sum()),
            "counters": summary.counters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=16, help="frame edge, px")
    parser.add_argument("--mode", choices=("both", "record-only", "compute"), default="both",
                        help="record-only, compute (reconstruct, policy latest), or both")
    parser.add_argument("--compute", action="store_true", help="same as --mode compute")
    parser.add_argument("--every", type=int, default=1000, help="frames between RSS samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of frames skipped")
    args = parser.parse_args()
    modes = ["compute"] if args.compute else (
        ["record-only", "compute"] if args.mode == "both" else [args.mode])
    rows = []
    for mode in modes:
        compute = mode == "compute"
        size = max(args.size, 32) if compute else args.size  # pop-out needs 2 patches
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(soak(Path(tmp) / "soak.zarr", frames=args.frames, size=size,
                             compute=compute, every=args.every, warmup=args.warmup))
    print("| mode | frames | frame | frames/s | refined | skipped | RSS after warm-up -> end "
          "(MB) | RSS slope (kB / 1000 frames) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['stored']} | {r['size']}x{r['size']} u16 | "
              f"{r['frames_per_s']:.0f} | {r['refined']} | {r['skipped']} | "
              f"{r['rss_start_mb']:.1f} -> {r['rss_end_mb']:.1f} | "
              f"{r['slope_kb_per_1000']:.2f} |")
    for r in rows:
        print(f"{r['mode']}: counters {r['counters']}; {r['samples']} samples after warm-up; "
              f"{r['seconds']:.0f} s")
    short = [r for r in rows if r["stored"] != args.frames]
    if short:
        raise SystemExit("; ".join(f"{r['mode']}: stored {r['stored']} of {args.frames} frames"
                                   for r in short))

if __name__ == "__main__":
    main()
