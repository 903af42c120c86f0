"""The live view's cost to the writer, and how fast it opens a long run (issue 24).

    python benchmarks/view.py [--frames 200] [--size 256] [--slices 8] [--rounds 3]
                              [--open-frames 10000] [--store DIR]

1. Writer frames/s with a view open vs without, as a ratio taken in one run. The writer is
   the run store's own (``RunStore.append`` of a ``--size``² uint16 frame, then
   ``write_result`` of its pop-out and refined (slices, size/2, size/2) volumes (bin 2): what the
   pipeline's writer thread does per frame), as fast as it can, so any slow-down shows. With
   the view: a ``stream3d view`` process on the store being written and a client process
   that polls ``/api/state`` every second and fetches the newest frame's info and five
   pictures whenever it changes, like the page. Rounds alternate without / with the view
   (a fresh store each); the ratio is of the medians. Target: >= 0.95.
2. Opening a ``--open-frames``-frame store (made once with the writer's API: 32² frames,
   4-slice volumes, every frame refined; kept in ``--store`` for the next run): time from
   starting ``stream3d view`` to the answer of ``/api/state`` and the newest frame's info and
   pictures; and the same inside one process (the view object made, state, pictures).
   Target: < 2 s. The store was just written or read, so its files are in the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream3d import config as config_mod  # noqa: E402
from stream3d.store import RawFrame, RunStore, Status  # noqa: E402
from stream3d.viewer.beside import free_port  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
KINDS = ("raw", "popout", "height", "thickness", "render")

# The client: what the page does (state every second; the newest frame's info and pictures).
CLIENT = r"""
import json, sys, time, urllib.request
url, shown, kinds = sys.argv[1], None, sys.argv[2].split(",")
def get(path):
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return r.read()
while True:
    try:
        st = json.loads(get("api/state"))
        if st["latest"] >= 0 and st["latest"] != shown:
            shown = st["latest"]
            get(f"frame/{shown}/info.json")
            for k in kinds:
                get(f"frame/{shown}/{k}.png")
    except OSError:
        pass
    time.sleep(1.0)
"""


def stream3d(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream3d", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "api/state", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_run(path: Path, config, frames: int, size: int, *, view: bool) -> float:
    """Frames/s of the writer over ``frames`` frames, with or without a view and a client."""
    rng = np.random.default_rng(0)
    raw = [rng.poisson(1000, (size, size)).astype(np.uint16) for _ in range(8)]
    vol = rng.random((config.sample.slices, size // 2, size // 2)).astype(np.float32)
    store = RunStore.open(path, config)
    store.append([RawFrame("bench", 0, 0.0, raw[0])])  # arrays made before timing
    store.write_result(0, status=Status.REFINED, popout=vol, volume=vol, loss=1.0)
    procs = []
    try:
        if view:
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            procs.append(stream3d("view", str(path), "--port", str(port), "--quiet"))
            wait_for(url)
            procs.append(subprocess.Popen([sys.executable, "-c", CLIENT, url, ",".join(KINDS)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)  # the client has looked once
        t0 = time.perf_counter()
        for i in range(1, frames + 1):
            (t,) = store.append([RawFrame("bench", i, 0.01 * i, raw[i % len(raw)])])
            store.write_result(t, status=Status.REFINED, popout=vol, volume=vol, loss=1.0 / i)
        rate = frames / (time.perf_counter() - t0)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        store.close()
    return rate


def make_long_run(path: Path, frames: int) -> float:
    """A ``frames``-frame store written with the writer's API (s taken); reused if present."""
    config = config_mod.load(None, ["sample.slices=4", "sample.slice_thickness=20"])
    if (path / "zarr.json").exists():
        meta = json.loads((path / "zarr.json").read_text())
        if meta["attributes"]["stream3d"].get("frames") == frames:
            return 0.0
        shutil.rmtree(path)
    t0 = time.perf_counter()
    store = RunStore.open(path, config)
    rng = np.random.default_rng(1)
    frame = rng.poisson(100, (32, 32)).astype(np.uint16)
    vol = np.zeros((4, 32, 32), np.float32)
    vol[1:3, 8:24, 8:24] = config.sample.potential
    for start in range(0, frames, 500):
        store.append([RawFrame("long", i, 0.01 * i, frame)
                      for i in range(start, min(frames, start + 500))])
    for t in range(frames):
        store.write_result(t, status=Status.REFINED, popout=vol, volume=vol, loss=1.0 + t % 7)
    store.close()
    return time.perf_counter() - t0


def open_time_process(path: Path, frames: int) -> float:
    """s from starting `stream3d view` to /api/state and the newest frame's info + pictures."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = stream3d("view", str(path), "--port", str(port), "--quiet")
    try:
        wait_for(url)
        st = json.loads(urllib.request.urlopen(url + "api/state", timeout=10).read())
        assert st["frames"] == frames and st["latest"] == frames - 1, st
        urllib.request.urlopen(f"{url}frame/{st['latest']}/info.json", timeout=10).read()
        for k in KINDS:
            urllib.request.urlopen(f"{url}frame/{st['latest']}/{k}.png", timeout=10).read()
        return time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()


def open_time_in_process(path: Path) -> float:
    from stream3d.viewer.state import RunView

    t0 = time.perf_counter()
    view = RunView(path)
    st = view.state()
    view.info(st["latest"])
    for k in KINDS:
        view.picture(st["latest"], k)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per writer round")
    ap.add_argument("--size", type=int, default=256, help="raw frame side (px)")
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each (alternating)")
    ap.add_argument("--open-frames", type=int, default=10_000)
    ap.add_argument("--store", type=Path, default=ROOT / "out" / "bench-view-long.zarr",
                    help="where the long store is kept between runs")
    args = ap.parse_args()

    config = config_mod.load(None, [f"sample.slices={args.slices}", "sample.slice_thickness=40",
                                    "stream.bin=2"])  # volumes of (size / 2)² binned px
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for view in (False, True):
                rate = write_run(Path(tmp) / f"w{r}{int(view)}.zarr", config, args.frames,
                                 args.size, view=view)
                rates[view].append(rate)
                print(f"round {r + 1}: writer {'with' if view else 'without'} view "
                      f"{rate:7.1f} frames/s", flush=True)
    without, with_view = statistics.median(rates[False]), statistics.median(rates[True])
    ratio = with_view / without

    made = make_long_run(args.store, args.open_frames)
    if made:
        print(f"made a {args.open_frames}-frame store with the writer's API in {made:.0f} s")
    in_process = min(open_time_in_process(args.store) for _ in range(3))
    process = min(open_time_process(args.store, args.open_frames) for _ in range(3))

    print()
    print(f"writer frames/s ({args.size}² frames, {args.slices}x{args.size // 2}² volumes), "
          f"median of {args.rounds}:")
    print(f"  without a view      {without:8.1f}")
    print(f"  with view + client  {with_view:8.1f}")
    print(f"  ratio               {ratio:8.3f}   target >= 0.95   "
          f"{'PASS' if ratio >= 0.95 else 'FAIL'}")
    print(f"open a {args.open_frames}-frame store, /api/state + newest frame's info and pictures:")
    print(f"  in one process      {in_process:8.2f} s")
    print(f"  `stream3d view` process start to last picture {process:8.2f} s   target < 2 s   "
          f"{'PASS' if process < 2.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
